"""Modal screens: help, one trace, export."""
