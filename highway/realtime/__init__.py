"""Pure realtime aggregation: event-time windows, exact distinct users, partial merging (no I/O).

* :mod:`highway.realtime.ids` — user id → 64-bit bitmap key (collision bound documented there).
* :mod:`highway.realtime.windows` — per-partition window state with watermark and allowed lateness.
* :mod:`highway.realtime.partials` — closed-window partials: wire form and exact cluster-wide sums.
* :mod:`highway.realtime.cardinality` — top-N + ``other`` label capping.
"""
