"""The demo's presentation: live progress and closing summary (pure; the CLI feeds it measurements)."""
