"""`highway collector hash-key KEY`: the digest to store in ``collector_api_keys`` for an API key."""

from __future__ import annotations

from typing import Annotated

import typer

from core.collect.keys import hash_key


def hash_key_command(key: Annotated[str, typer.Argument(help="the API key handed to a client")]) -> None:
    """Print the SHA-256 hex digest of KEY (the settings store digests, never keys)."""
    typer.echo(hash_key(key))


def register(app: typer.Typer) -> None:
    collector_app = typer.Typer(help="The HTTP collector's keys (docs/collector.md).", no_args_is_help=True)
    collector_app.command("hash-key")(hash_key_command)
    app.add_typer(collector_app, name="collector")
