"""The verify framework: checks, their results, the registry, and the pure reconciliation of ids.

A check compares one kind of pipeline output with the ground truth and returns one or more
:class:`CheckResult` rows. A check whose output does not exist yet returns
:meth:`CheckResult.not_present` (shown, never failed). See ``highway/verify/__init__.py`` for how to
add one.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.settings import Settings
from core.sim.truth import Truth

PLUGIN_MODULES: tuple[str, ...] = (
    "highway.verify.topics",
    "highway.verify.lake",
    "highway.verify.concurrency",
)
"""Modules imported (when they exist) to let their ``@register_check`` decorators run."""


@dataclass(frozen=True)
class CheckResult:
    """One row of the verify table. ``passed`` is ignored when ``present`` is False."""

    name: str
    passed: bool
    expected: int | str | None = None
    actual: int | str | None = None
    missing: int = 0
    duplicates: int = 0
    detail: str = ""
    present: bool = True

    @classmethod
    def not_present(cls, name: str, detail: str) -> CheckResult:
        return cls(name=name, passed=True, detail=detail, present=False)

    @property
    def status(self) -> str:
        if not self.present:
            return "not present"
        return "pass" if self.passed else "FAIL"


@dataclass
class VerifyContext:
    """What every check gets: settings, the truth, the lane, and a cache checks may share.

    ``allow_duplicates``: the pipeline is at-least-once, so duplicates are reported but do not fail.
    """

    settings: Settings
    truth: Truth
    lane: str
    allow_duplicates: bool = False
    cache: dict[str, Any] = field(default_factory=dict)

    def ids_pass(self, missing: int, duplicates: int) -> bool:
        """The usual verdict for an id reconciliation under this run's duplicate policy."""
        return missing == 0 and (duplicates == 0 or self.allow_duplicates)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key per verify run (e.g. topic contents several checks read)."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


class Check(Protocol):
    """A verification. ``name`` is unique and used by ``highway verify --only``."""

    name: str

    def run(self, context: VerifyContext) -> list[CheckResult]: ...


_REGISTRY: dict[str, Callable[[], Check]] = {}


def register_check(factory: Callable[[], Check]) -> Callable[[], Check]:
    """Class (or factory) decorator: make a check available to ``highway verify``."""
    name = factory().name
    if name in _REGISTRY and _REGISTRY[name] is not factory:
        raise ValueError(f"a verify check named {name!r} is already registered")
    _REGISTRY[name] = factory
    return factory


def load_plugins() -> None:
    for module in PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the module exists but something it imports does not
                raise


def registered_checks(only: Iterable[str] | None = None) -> list[Check]:
    """Instances of the registered checks (all, or the named ones), topic checks first."""
    load_plugins()
    wanted = None if only is None else list(only)
    if wanted is not None:
        unknown = sorted(set(wanted) - set(_REGISTRY))
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(_REGISTRY)}")
    chosen = [factory for name, factory in _REGISTRY.items() if wanted is None or name in wanted]
    return [factory() for factory in sorted(chosen, key=_plugin_rank)]


def _plugin_rank(factory: Callable[[], Check]) -> int:
    """Checks run in PLUGIN_MODULES order (whatever was imported first), then in registration order."""
    module = getattr(factory, "__module__", "")
    return PLUGIN_MODULES.index(module) if module in PLUGIN_MODULES else len(PLUGIN_MODULES)


def run_checks(context: VerifyContext, checks: Iterable[Check]) -> list[CheckResult]:
    results: list[CheckResult] = []
    for check in checks:
        results.extend(check.run(context))
    return results


def overall_passed(results: Iterable[CheckResult]) -> bool:
    return all(result.passed for result in results if result.present)


@dataclass(frozen=True)
class Reconciliation:
    """Expected ids against what was found (a multiset: duplicates count)."""

    expected: int
    found: int
    missing: int
    duplicates: int
    unexpected: int
    missing_sample: tuple[str, ...]

    @property
    def exact(self) -> bool:
        return self.missing == 0 and self.duplicates == 0 and self.unexpected == 0


def reconcile(expected_ids: Iterable[str], found: Counter[str], sample: int = 3) -> Reconciliation:
    """Missing, duplicated and unexpected ids (pure)."""
    expected = set(expected_ids)
    missing = expected.difference(found)
    duplicates = sum(count - 1 for count in found.values() if count > 1)
    unexpected = sum(1 for event_id in found if event_id not in expected)
    return Reconciliation(
        expected=len(expected),
        found=sum(found.values()),
        missing=len(missing),
        duplicates=duplicates,
        unexpected=unexpected,
        missing_sample=tuple(sorted(missing)[:sample]),
    )
