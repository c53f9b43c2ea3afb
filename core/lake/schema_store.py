"""The parquet lake's table schemas as stored: ``<lane>/<table>/_schema.json``, read with its version
and written with a compare-and-swap on it, so concurrent writers of one table never lose each
other's column decisions.

Several workers write one table. A refused write (another writer stored columns since this one read
the schema) reads the stored schema again, lets the stored decisions win, routes the flush's rows
again — a column this writer created may now be another's, with another type, so its values move to
a sibling — and tries again. The commit path settles the schema before it writes any data file, so
every file is written with columns the stored schema has, with their stored types.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.errors import TransientError
from core.lake.columnar import FlushBatch
from core.lake.layout import schema_key
from core.lake.ports import ObjectStore, PreconditionFailed
from core.lake.schema import ShapeLimits, TableSchema

log = logging.getLogger(__name__)
TableKey = tuple[str, str]
SCHEMA_ATTEMPTS = 10  # compare-and-swap rounds of one table's schema in one flush


@dataclass
class StoredSchemas:
    """Each table's schema as this writer holds it, the bytes last read or written, and their
    version tag (S3: the ETag)."""

    store: ObjectStore
    limits: ShapeLimits
    overrides: Mapping[str, TableSchema] = field(default_factory=dict)
    schemas: dict[TableKey, TableSchema] = field(default_factory=dict)
    stored: dict[TableKey, bytes] = field(default_factory=dict)
    tags: dict[TableKey, str] = field(default_factory=dict)

    def load(self, key: TableKey) -> None:
        found = self.store.get_tagged(schema_key(*key))
        # The stored schema first: the columns a table has keep their types, an override only
        # declares the ones it does not have yet.
        schema = TableSchema.from_bytes(found[0]) if found else TableSchema()
        if found:
            self.stored[key], self.tags[key] = found
        override = self.overrides.get(key[1])
        if override is not None:
            schema.merge(override)
        schema.limits = self.limits
        self.schemas[key] = schema

    def refresh(self, key: TableKey) -> bool:
        """Fold the stored schema in when it changed since it was read (the stored decisions win;
        ours that do not clash are kept); True when it had."""
        found = self.store.get_tagged(schema_key(*key))
        if found is None:  # gone (or never there): the next write creates it
            self.stored.pop(key, None)
            self.tags.pop(key, None)
            return False
        stored, self.tags[key] = found
        if stored == self.stored.get(key):
            return False
        fresh = TableSchema.from_bytes(stored)
        fresh.merge(self.schemas[key])
        fresh.limits = self.limits
        self.schemas[key] = fresh
        self.stored[key] = stored
        return True

    def settle(self, key: TableKey, batches: Sequence[FlushBatch]) -> None:
        """Store the table's schema if it changed, by compare-and-swap from the version last read;
        refused: refresh, route the records of ``batches`` again, retry."""
        for _ in range(SCHEMA_ATTEMPTS):
            encoded = self.schemas[key].to_bytes(key[1])
            if self.stored.get(key) == encoded:
                return
            try:
                self.tags[key] = self.store.put_if(schema_key(*key), encoded, self.tags.get(key))
                self.stored[key] = encoded
                return
            except PreconditionFailed:
                if self.refresh(key):
                    for batch in batches:
                        batch.observe(self.schemas[key], "after a concurrent change")
                    log.info("lake: %s.%s: schema changed by another writer meanwhile; merged", *key)
        raise TransientError(f"{schema_key(*key)}: schema kept changing under {SCHEMA_ATTEMPTS} attempts")
