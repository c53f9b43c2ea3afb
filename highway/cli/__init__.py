"""The ``highway`` command line. Each area registers its commands from its own module."""

from __future__ import annotations

import os
import sys

import typer

from highway.cli import analytics, bench, collector, demo, dev, lake, produce, query, topics, verify, worker
from highway.cli.common import root_callback

app = typer.Typer(
    name="highway",
    help="Highway: route, lake and real-time analytics for event streams on Kafka and S3.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(root_callback)

for _area in (dev, produce, verify, worker, demo, query, analytics, topics, bench, lake, collector):
    _area.register(app)


def main() -> None:
    try:
        app()
    except SystemExit as done:
        if query.work_left_running():
            # A read given up at the query deadline may still wait on a silent S3 endpoint, and
            # pyarrow's S3 finalizer (atexit) would wait for it: the exit would come long after the
            # deadline the user was promised. The answer is printed; leave without the finalizers.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(done.code if isinstance(done.code, int) else 1)
        raise
