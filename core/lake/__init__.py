"""Pure logic of the lake stage: layout and keys, schemas, Parquet encoding, flush policy, manifests.

Nothing in this package performs I/O; ``connectors.lake_fs`` stores bytes and ``streams.lake`` runs
the consumer loop that ties them together.
"""
