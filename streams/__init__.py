"""The Faust app and its agents: one module per agent family (routing, lake, realtime)."""
