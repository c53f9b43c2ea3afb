"""Fencing of lake writers: who may write a topic-partition's manifest, and what recovery may delete.

Every manifest write is a compare-and-swap on the version the writer last saw
(:meth:`core.lake.ports.ObjectStore.put_if`: S3's ``If-Match`` / ``If-None-Match: *``). On
assignment a writer *claims* the partition — bumps the manifest's ``epoch`` with such a write — so
each epoch number belongs to exactly one writer, and from then on an older writer's manifest write
is refused (:class:`Fenced`): it can never vouch for anything again.

Recovery after a claim deletes the data files of the partition whose first offset is above
``committed_offset`` and whose epoch is older than the claim: no manifest vouches for them and none
ever will (their writers are fenced). It looks only under the Hive partitions the manifest declares
(``Manifest.values``) — or, for a partition never claimed before, once in its whole table.
docs/lake.md ("Exactly once") has the argument.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from core.errors import TransientError
from core.lake.layout import manifest_key, partition_file_prefix, table_prefix
from core.lake.manifest import ANYWHERE, Manifest, orphan_files
from core.lake.ports import ObjectStore, PreconditionFailed

CLAIM_ATTEMPTS = 10
OWN_WRITE_ATTEMPTS = 3


class Fenced(Exception):
    """Another writer claimed the partition: this writer's manifest write was refused."""

    def __init__(self, key: str, stored: Manifest | None) -> None:
        self.stored = stored
        holder = f"epoch {stored.epoch} of {stored.owner or '?'}" if stored else "gone"
        super().__init__(f"{key}: manifest is now {holder}")


class ManifestGone(TransientError):
    """The manifest this writer holds vanished from the store (a bucket deleted, or being restored):
    no other writer's claim. Nothing is written for the partition until it is back (the same bytes
    carry the same tag), so a restore in progress is never overwritten by a start from scratch."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"{key}: the manifest vanished from the store; waiting for it to come back "
            "(restarting the worker instead starts the partition over from its stored state)"
        )


def put_manifest(store: ObjectStore, key: str, manifest: Manifest, tag: str | None) -> str:
    """Write ``manifest`` if the stored one is still at ``tag``; its new tag. A refusal whose stored
    manifest is this writer's own (same epoch and owner) is a write of ours whose answer was lost
    (a retried PUT that had landed): it is adopted and the write repeated. A refusal because the
    manifest is gone raises :class:`ManifestGone`; any other refusal raises :class:`Fenced`."""
    for _ in range(OWN_WRITE_ATTEMPTS):
        try:
            return store.put_if(key, manifest.to_bytes(), tag)
        except PreconditionFailed:
            found = store.get_tagged(key)
            if found is None:
                raise ManifestGone(key) from None
            stored = Manifest.from_bytes(found[0])
            if (stored.epoch, stored.owner) != (manifest.epoch, manifest.owner):
                raise Fenced(key, stored) from None
            tag = found[1]
    raise Fenced(key, None)


@dataclass(frozen=True)
class Claim:
    """A partition taken over: the manifest the claim replaced and the one it wrote (with its tag)."""

    previous: Manifest
    manifest: Manifest
    tag: str


def claim_partition(store: ObjectStore, lane: str, topic: str, partition: int, owner: str) -> Claim:
    """Bump the partition's epoch with a conditional write, re-reading when another write got in
    between (a zombie's last commit, or a concurrent claim)."""
    key = manifest_key(lane, topic, partition)
    for _ in range(CLAIM_ATTEMPTS):
        found = store.get_tagged(key)
        previous = Manifest.from_bytes(found[0]) if found else Manifest(topic, partition)
        claimed = previous.claimed(owner)
        try:
            return Claim(
                previous, claimed, store.put_if(key, claimed.to_bytes(), found[1] if found else None)
            )
        except PreconditionFailed:
            again = store.get_tagged(key)
            if again is not None and Manifest.from_bytes(again[0]) == claimed:
                return Claim(previous, claimed, again[1])  # ours: the answer to our write was lost
    raise TransientError(f"{key}: could not claim the partition in {CLAIM_ATTEMPTS} attempts")


def sweep_prefixes(lane: str, table: str, claim: Claim) -> list[str]:
    """Where files of a dead flush of the claimed partition may be: its declared Hive partitions,
    or the whole table for a partition never claimed before."""
    if ANYWHERE in claim.manifest.values:
        return [table_prefix(lane, table) + "/"]
    return [
        partition_file_prefix(lane, table, value, claim.manifest.partition) for value in claim.manifest.values
    ]


@dataclass(frozen=True)
class Recovery:
    manifest: Manifest
    orphans: list[str]
    tag: str = ""

    @property
    def start_offset(self) -> int | None:
        """Where reading resumes; None: from the beginning (nothing of this partition is in the lake)."""
        return self.manifest.next_offset if self.manifest.committed_offset >= 0 else None


def recover_partition(
    store: ObjectStore, lane: str, table: str, topic: str, partition: int, owner: str = ""
) -> Recovery:
    """Claim one partition and delete its orphans (:meth:`LakeCommitter.recover` does many at once)."""
    claim = claim_partition(store, lane, topic, partition, owner or uuid.uuid4().hex[:12])
    keys = [key for prefix in sweep_prefixes(lane, table, claim) for key in store.list_keys(prefix)]
    orphans = orphan_files(claim.manifest, keys, below_epoch=claim.manifest.epoch)
    for orphan in orphans:
        store.delete(orphan)
    return Recovery(claim.manifest, orphans, claim.tag)
