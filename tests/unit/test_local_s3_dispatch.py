"""The local S3 server remembers moto's service lookup per host, with the same answers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from connectors.local import s3 as local_s3


def test_the_remembered_lookup_gives_moto_s_answers_and_lists_the_package_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto import backends
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    # Patched on the classes and module as the server does; undone after the test.
    monkeypatch.setattr(backends, "list_of_moto_modules", backends.list_of_moto_modules)
    monkeypatch.setattr(
        DomainDispatcherApplication, "get_backend_for_host", DomainDispatcherApplication.get_backend_for_host
    )
    hosts = ["s3.us-east-1.amazonaws.com", "glue.us-east-1.amazonaws.com", "s3", "moto_api", "example.org"]
    plain = DomainDispatcherApplication(create_app=lambda service: None)  # type: ignore[arg-type,return-value]
    expected = [plain.get_backend_for_host(host) for host in hosts]
    assert expected[:4] == ["s3", "glue", "s3", "moto_api"]

    listed: list[int] = []
    list_modules = backends.list_of_moto_modules

    def counted() -> Iterable[str]:
        listed.append(1)
        return list_modules()

    monkeypatch.setattr(backends, "list_of_moto_modules", counted)
    local_s3._remember_moto_dispatch()
    assert len(listed) == 1
    remembered = DomainDispatcherApplication(create_app=lambda service: None)  # type: ignore[arg-type,return-value]
    tried: list[int] = []

    class Patterns(list[tuple[str, Any]]):
        def __iter__(self) -> Iterator[tuple[str, Any]]:
            tried.append(1)
            return super().__iter__()

    remembered.backend_url_patterns = Patterns(remembered.backend_url_patterns)
    assert [remembered.get_backend_for_host(host) for host in hosts * 3] == expected * 3
    assert len(listed) == 1  # the directory is listed at start, never per request
    assert len(tried) == 3  # the URL patterns once per host that needs them, not once per request
