"""Fleetdeck: a local-first operator console for production LLM traffic."""

__version__ = "0.1.0"
