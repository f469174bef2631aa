"""The console's panes, one module each; they draw what console.tui.readmodel reads."""
