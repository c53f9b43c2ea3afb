"""The lake check of ``highway verify``: rows per event type and event_id sets against the truth.

The lake is exactly-once, so any duplicate fails the check whatever the run's duplicate policy.
Ids the truth does not know (other producers on the lane) are reported, not failed.
"""

from __future__ import annotations

from collections import Counter

from connectors.lake_reader import lake_columns, lake_location
from highway.verify.framework import CheckResult, VerifyContext, reconcile, register_check


@register_check
class LakeCheck:
    name = "lake"

    def run(self, context: VerifyContext) -> list[CheckResult]:
        table = lake_columns(context.settings, context.lane, ["event_name", "event_id"])
        if table.num_rows == 0:
            return [
                CheckResult.not_present(
                    "lake", f"no lake rows in {lake_location(context.settings, context.lane)}"
                )
            ]
        names = table.column("event_name").to_pylist()
        ids = table.column("event_id").to_pylist()
        by_type: dict[str, Counter[str]] = {}
        for name, event_id in zip(names, ids, strict=True):
            by_type.setdefault(name or "", Counter())[event_id or ""] += 1
        truth = context.truth
        overall = reconcile(truth.all_event_ids(), Counter(i or "" for i in ids))
        exact_types = sum(
            1
            for name, count in truth.counts.items()
            if sum(by_type.get(name, Counter()).values()) == count
            and not reconcile(truth.event_ids.get(name, []), by_type.get(name, Counter())).missing
        )
        detail = f"{overall.unexpected:,} ids not in the truth" if overall.unexpected else ""
        if overall.missing_sample:
            detail = f"missing e.g. {', '.join(overall.missing_sample)}"
        return [
            CheckResult(
                "lake rows",
                overall.missing == 0 and overall.duplicates == 0,
                overall.expected,
                overall.found,
                overall.missing,
                overall.duplicates,
                detail,
            ),
            CheckResult(
                "lake tables",
                exact_types == len(truth.counts),
                len(truth.counts),
                exact_types,
                detail="event types whose row count and id set equal the truth",
            ),
        ]
