"""Reconcile the lake against a ground truth: per event type, missing and duplicated event_ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass
class LakeReconciliation:
    expected: int = 0
    found: int = 0
    missing: int = 0
    duplicates: int = 0
    unexpected: int = 0
    types_expected: int = 0
    types_found: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.duplicates == 0 and self.unexpected == 0


def reconcile(
    truth_ids: Mapping[str, Iterable[str]], lake_rows: Iterable[tuple[str | None, str | None]]
) -> LakeReconciliation:
    """Compare ``truth_ids`` (event name → ids) with the lake's (event_name, event_id) pairs."""
    seen: dict[str, Counter[str | None]] = {}
    for name, event_id in lake_rows:
        seen.setdefault(name or "", Counter())[event_id] += 1
    report = LakeReconciliation(types_expected=len(truth_ids), types_found=len(seen))
    for name, ids in truth_ids.items():
        wanted = set(ids)
        counts = seen.pop(name, Counter())
        report.expected += len(wanted)
        report.found += sum(counts.values())
        missing = wanted - set(counts)
        report.missing += len(missing)
        dup = sum(count - 1 for count in counts.values() if count > 1)
        report.duplicates += dup
        extra = sum(count for event_id, count in counts.items() if event_id not in wanted)
        report.unexpected += extra
        if missing and len(report.examples) < 5:
            report.examples[f"missing:{name}"] = sorted(missing)[:3]
        if dup and len(report.examples) < 5:
            report.examples[f"duplicate:{name}"] = [str(i) for i, c in counts.items() if c > 1][:3]
    for counts in seen.values():  # types the truth does not know
        report.found += sum(counts.values())
        report.unexpected += sum(counts.values())
    return report
