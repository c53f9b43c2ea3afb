"""A partition's users as dense indices: the interning table and the active-user arrays (numpy).

Roaring bitmaps of 64-bit user keys are compact only when keys are dense; hashed ids are spread
over 63 bits, so a ``BitMap64`` of a million of them holds a million one-element containers (about
0.2 KB per user and bitmap). The windows therefore hold 32-bit **dense indices** handed out here,
and everything per user lives in flat arrays instead of Python objects:

* an open-addressing hash table (linear probing, multiplicative hashing, load ≤ 0.7) of
  ``uint64`` keys → ``int32`` indices, looked up and extended a whole batch at a time;
* ``seen``: per index, the user's last event time and platform packed into one ``int64``
  (``ts * PLATFORM_SLOTS + platform``), or ``FREE``.

About 25 to 40 bytes per user in all (12 bytes per slot, 35 to 70 % of the slots in use; 8 per
index), against about 1 KB for dicts of ints and per-key bitmap containers.

Indices are reused after eviction. That is exact because :class:`~core.realtime.windows.PartitionWindows`
evicts only users last seen before every window it still holds: an evicted index is in no held
bitmap, so a new user taking it cannot be confused with the old one. Evicted slots become
tombstones until the table is rebuilt (when tombstones and users together pass the load limit).

Readers on other threads (the user lookup) see a consistent table: growth and rebuilds build new
arrays and replace them with one attribute assignment; a lookup racing with an eviction may answer
with the index's new owner's entry or none — never a crash.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

PLATFORM_SLOTS = 4096  # ``seen`` packs ts * slots + platform index into one int64
FREE = -1  # ``seen`` of an index no user holds
_EMPTY = -1  # table value of a slot never used
_TOMBSTONE = -2  # table value of a slot whose user was evicted
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of key * φ·2^64
_MIN_BITS = 10
_MAX_LOAD_TENTHS = 7  # users and tombstones together fill at most 70 % of the slots

Keys = npt.NDArray[np.uint64]
Indices = npt.NDArray[np.int64]


def _slots(keys: Keys, bits: int) -> Indices:
    with np.errstate(over="ignore"):
        return (keys * _MULTIPLIER >> np.uint64(64 - bits)).astype(np.int64)


class UserTable:
    """Dense indices for one partition's user keys, with each user's last-seen time and platform."""

    def __init__(self) -> None:
        self._bits = _MIN_BITS
        self._table: tuple[Keys, npt.NDArray[np.int32]] = self._empty_table(self._bits)
        self._used = 0  # slots holding a user or a tombstone
        self.seen: npt.NDArray[np.int64] = np.full(1 << _MIN_BITS, FREE, dtype=np.int64)
        self._next = 0  # indices below this were handed out at least once
        self._free: list[npt.NDArray[np.int64]] = []  # evicted indices, reused first
        self.live = 0

    @staticmethod
    def _empty_table(bits: int) -> tuple[Keys, npt.NDArray[np.int32]]:
        return np.zeros(1 << bits, dtype=np.uint64), np.full(1 << bits, _EMPTY, dtype=np.int32)

    def __len__(self) -> int:
        return self.live

    @property
    def allocated(self) -> int:
        """Indices handed out so far (held or free): what ``seen`` must cover."""
        return self._next

    # --- batch interning (the consumer thread) ------------------------------------------------------
    def intern(self, keys: Keys) -> Indices:
        """The dense index of every key (new keys get one); same shape as ``keys``."""
        if not len(keys):
            return np.zeros(0, dtype=np.int64)
        unique, inverse = np.unique(keys, return_inverse=True)
        found = self._find(unique)
        missing = found < 0
        if missing.any():
            found[missing] = self._insert(unique[missing])
        return found[inverse.reshape(-1)]

    def _find(self, keys: Keys) -> Indices:
        """Index per (distinct) key, -1 where absent."""
        table_keys, table_values = self._table
        mask = len(table_keys) - 1
        slots = _slots(keys, self._bits)
        out = np.full(len(keys), -1, dtype=np.int64)
        pending = np.arange(len(keys))
        while len(pending):
            values = table_values[slots]
            hit = (values >= 0) & (table_keys[slots] == keys[pending])
            out[pending[hit]] = values[hit]
            go_on = ~hit & (values != _EMPTY)
            pending, slots = pending[go_on], (slots[go_on] + 1) & mask
        return out

    def _insert(self, keys: Keys) -> Indices:
        """Give new (distinct, absent) keys indices and slots."""
        if (self._used + len(keys)) * 10 > len(self._table[0]) * _MAX_LOAD_TENTHS:
            self._rebuild(self.live + len(keys))
        indices = self._take_indices(len(keys))
        self._place(self._table, self._bits, keys, indices.astype(np.int32))
        self._used += len(keys)
        self.live += len(keys)
        return indices

    @staticmethod
    def _place(
        table: tuple[Keys, npt.NDArray[np.int32]], bits: int, keys: Keys, indices: npt.NDArray[np.int32]
    ) -> None:
        table_keys, table_values = table
        mask = len(table_keys) - 1
        slots = _slots(keys, bits)
        pending = np.arange(len(keys))
        while len(pending):
            open_ = table_values[slots] == _EMPTY
            # Of several keys probing one empty slot in this round, the first takes it.
            _, first = np.unique(slots[open_], return_index=True)
            winners = np.flatnonzero(open_)[first]
            table_keys[slots[winners]] = keys[pending[winners]]
            table_values[slots[winners]] = indices[pending[winners]]
            placed = np.zeros(len(pending), dtype=bool)
            placed[winners] = True
            moving = ~open_  # losers of a contested slot retry it: it is taken now, so they move on
            pending, slots = pending[~placed], np.where(moving, (slots + 1) & mask, slots)[~placed]

    def _take_indices(self, n: int) -> Indices:
        taken: list[Indices] = []
        while n and self._free:
            chunk = self._free.pop()
            use, rest = chunk[:n], chunk[n:]
            if len(rest):
                self._free.append(rest)
            taken.append(use)
            n -= len(use)
        if n:
            start, self._next = self._next, self._next + n
            if self._next > len(self.seen):
                grown = np.full(max(self._next, 2 * len(self.seen)), FREE, dtype=np.int64)
                grown[: len(self.seen)] = self.seen
                self.seen = grown
            taken.append(np.arange(start, self._next, dtype=np.int64))
        return np.concatenate(taken) if len(taken) > 1 else taken[0]

    def _rebuild(self, users: int) -> None:
        """A new table sized for ``users`` holding the live entries (tombstones dropped)."""
        table_keys, table_values = self._table
        live = table_values >= 0
        bits = _MIN_BITS
        while (1 << bits) < 2 * users:  # half full at most after a rebuild
            bits += 1
        table = self._empty_table(bits)
        self._used = int(live.sum())
        if self._used:
            self._place(table, bits, table_keys[live], table_values[live])
        # Filled before it is published: a reader on another thread sees the old table or this one.
        self._table, self._bits = table, bits

    # --- last seen ------------------------------------------------------------------------------------
    def touch(self, indices: Indices, packed: npt.NDArray[np.int64]) -> None:
        """Record ``packed`` (ts * PLATFORM_SLOTS + platform) per index where it is the newest."""
        np.maximum.at(self.seen, indices, packed)

    def evict_before(self, bound_ts: int) -> int:
        """Forget users last seen before ``bound_ts``; their indices are free again. Returns how many."""
        seen = self.seen[: self._next]
        stale = (seen != FREE) & (seen < bound_ts * PLATFORM_SLOTS)
        count = int(stale.sum())
        if not count:
            return 0
        table_values = self._table[1]
        occupied = np.flatnonzero(table_values >= 0)
        gone = occupied[stale[table_values[occupied]]]
        table_values[gone] = _TOMBSTONE
        freed = np.flatnonzero(stale).astype(np.int64)
        self.seen[freed] = FREE
        self._free.append(freed)
        self.live -= count
        return count

    # --- reading (any thread) ---------------------------------------------------------------------------
    def lookup(self, key: int) -> int | None:
        """``seen`` of ``key`` (packed), or None when the key is not held."""
        table_keys, table_values = self._table  # one read: a rebuild swaps both at once
        bits = len(table_keys).bit_length() - 1
        mask = len(table_keys) - 1
        slot = ((key * int(_MULTIPLIER)) & 0xFFFFFFFFFFFFFFFF) >> (64 - bits)
        while True:
            value = int(table_values[slot])
            if value == _EMPTY:
                return None
            if value >= 0 and int(table_keys[slot]) == key:
                seen = self.seen
                packed = int(seen[value]) if value < len(seen) else FREE
                return None if packed == FREE else packed
            slot = (slot + 1) & mask
