"""Product analytics over the lake's common table: funnels, user paths, user history and segments.

Pure SQL builders (no I/O): each takes a validated spec and the name of the relation holding the
lane's common attributes (``core.lake.layout.COMMON_TABLE``) and returns SQL text; the edges
(``connectors.lake_query``) run it with DuckDB, or print it for Athena.
"""
