"""Step 1: the virtual key → environment, owner and caps (console.gateway.keys)."""

from __future__ import annotations

from console.gateway.call import Call


async def authenticate(call: Call) -> None:
    identify(call)


def identify(call: Call) -> None:
    """Synchronous, for the calls that reach no model (model list, outcomes, unknown paths)."""
    keys = call.services.keys
    if keys is None:
        return
    call.key = key = keys.authenticate(call.headers)
    call.trace.key_id, call.trace.environment = key.key_id, key.environment
