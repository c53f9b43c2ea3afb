"""Pure routing logic: event names to topic names, batch classification, new-type quotas (no I/O)."""
