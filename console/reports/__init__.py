"""Reports exported from the CLI: the executive AI scorecard (`fleetdeck scorecard`)."""
