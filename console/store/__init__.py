"""The trace store: DuckDB schema, the recorder's spool and the named queries."""
