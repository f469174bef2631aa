"""The commands behind the `fleetdeck` CLI: each takes parsed options and answers what the CLI prints."""
