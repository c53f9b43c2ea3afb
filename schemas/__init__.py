"""Avro schemas (``*.avsc``) and their Python handling: validation and wire formats."""
