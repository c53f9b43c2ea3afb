"""Sessions: the common topic's events folded into sessions, committed exactly once (pure)."""
