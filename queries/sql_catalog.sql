-- sql_catalog: The store's tables and views with their columns and DuckDB types, for the SQL pane's catalog.
-- One row per column of the main schema, in table order then column order. kind: BASE
-- TABLE or VIEW (information_schema.tables.table_type).
-- users: sql pane
SELECT
    c.table_name,
    t.table_type AS kind,
    c.column_name,
    c.data_type
FROM information_schema.columns AS c
INNER JOIN information_schema.tables AS t
    ON c.table_catalog = t.table_catalog
    AND c.table_schema = t.table_schema
    AND c.table_name = t.table_name
WHERE c.table_schema = 'main' AND c.table_catalog = current_database()
ORDER BY c.table_name, c.ordinal_position
