"""The command palette's Fleetdeck entries: every pane and every pane action."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (what the palette shows, what it does, the app action it runs)
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("Overview", "the fleet at a glance: a green, amber or red tile per signal (1)", "show_pane('overview')"),
    ("Traffic", "the live request stream (2)", "show_pane('traffic')"),
    ("Fleet", "providers, breakers, latency, load, budgets (3)", "show_pane('fleet')"),
    ("Cost", "cost per outcome, spend by route, cache savings (4)", "show_pane('cost')"),
    ("Drift", "quality metrics against their baseline (5)", "show_pane('drift')"),
    ("Audit", "audit log, chain links, overrides (6)", "show_pane('audit')"),
    ("SQL", "read-only SQL over the traces (7)", "show_pane('sql')"),
    ("Playground", "chat through the gateway (8)", "show_pane('playground')"),
    ("Filter traffic", "type a filter for the request stream (/)", "pane_action('traffic', 'focus_filter')"),
    ("Clear traffic filter", "show all traffic again", "pane_action('traffic', 'clear_filter')"),
    ("Run SQL query", "run the SQL pane's statement (ctrl+j)", "pane_action('sql', 'run_query')"),
    ("Cancel SQL query", "interrupt the running statement (ctrl+g)", "pane_action('sql', 'cancel_query')"),
    (
        "Export SQL result",
        "write the whole result to CSV or Parquet (ctrl+s)",
        "pane_action('sql', 'export')",
    ),
    ("Saved queries", "pick a named query from queries/", "pane_action('sql', 'focus_saved')"),
    ("New playground chat", "forget the conversation (ctrl+l)", "pane_action('playground', 'clear')"),
    (
        "Reload playground models",
        "ask the gateway for its routes and models",
        "pane_action('playground', 'reload_models')",
    ),
    ("Verify audit chain", "check every hash and signed checkpoint (v)", "pane_action('audit', 'verify')"),
    ("Help", "what each pane shows and its keys (F1)", "help"),
)


class FleetdeckCommands(Provider):
    async def discover(self) -> Hits:
        for name, help_text, action in COMMANDS:
            yield DiscoveryHit(name, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, action in COMMANDS:
            score = matcher.match(name)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(name), partial(self.app.run_action, action), help=help_text
                )
