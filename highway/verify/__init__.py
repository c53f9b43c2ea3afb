"""`highway verify`: reconcile what the pipeline has produced so far against a simulator truth file.

The framework (``highway.verify.framework``) runs registered checks; each returns
:class:`CheckResult` rows (name, passed, expected, actual, missing, duplicates, detail). A check whose
output does not exist yet (no topic, no lake table …) returns ``CheckResult.not_present(name, why)``:
it is listed as "not present" and never fails the run.

Adding a check (the lake and concurrency areas do this in ``highway/verify/lake.py`` and
``highway/verify/concurrency.py``; both module names are already in ``framework.PLUGIN_MODULES``, so
creating the file is enough)::

    from highway.verify.framework import CheckResult, VerifyContext, register_check

    @register_check
    class LakeRowsCheck:
        name = "lake"                      # unique; `highway verify --only lake`

        def run(self, context: VerifyContext) -> list[CheckResult]:
            truth = context.truth          # core.sim.truth.Truth: counts, event_ids, distinct users
            settings = context.settings    # lane: context.lane
            ...                            # context.cached(key, fn) shares expensive reads
            return [CheckResult("lake", passed, expected, actual, missing, duplicates, detail)]

``highway.verify.framework.reconcile(expected_ids, Counter(found_ids))`` gives missing, duplicate and
unexpected counts. Checks run in PLUGIN_MODULES order (topics, lake, concurrency), then any other.
"""

from highway.verify.framework import (
    Check,
    CheckResult,
    VerifyContext,
    overall_passed,
    reconcile,
    register_check,
    registered_checks,
    run_checks,
)

__all__ = [
    "Check",
    "CheckResult",
    "VerifyContext",
    "overall_passed",
    "reconcile",
    "register_check",
    "registered_checks",
    "run_checks",
]
