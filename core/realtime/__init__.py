"""Pure realtime logic: event-time windows, exact distinct users, partials, publish order (no I/O).

* :mod:`core.realtime.ids` — user id → 64-bit bitmap key (collision bound documented there).
* :mod:`core.realtime.windows` — per-partition window state with watermark and allowed lateness.
* :mod:`core.realtime.users` — a partition's users as dense indices in arrays (interning table,
  last seen and platform): the compact per-user state the windows' 32-bit bitmaps index.
* :mod:`core.realtime.partials` — closed-window partials: wire form and exact cluster-wide sums.
* :mod:`core.realtime.cardinality` — top-N + ``other`` label capping.
* :mod:`core.realtime.events` — common-topic messages → parsed events.
* :mod:`core.realtime.publish` (over :mod:`core.realtime.ports`) — the commit path: partials in
  order per input partition, a failure fatal before anything later.
* :mod:`core.realtime.params` — HTTP API query parameters, checked.
"""
