"""The collector's pure core: request bodies, per-event checks, API keys and CORS (no I/O)."""
