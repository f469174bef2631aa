"""What the panes show, read from the store: plain Python over DuckDB cursors, no Textual.

Each module answers one pane through the named queries of queries/, so the panes and
`fleetdeck query --name …` agree. Functions take a cursor and the time "now" (a clock
the app injects, frozen in snapshot tests) and return plain records; the panes call
them from thread workers and only format and draw.
"""
