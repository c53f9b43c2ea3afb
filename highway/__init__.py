"""Highway: an event pipeline service (ingest → route → lake and real time) on Kafka and S3.

This package holds the settings, the CLI and the pure logic (naming, partitioning, aggregation,
schema merging) that the I/O layers in ``connectors`` and ``streams`` build on.
"""

__version__ = "0.1.0"
