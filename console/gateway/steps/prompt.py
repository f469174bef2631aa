"""Step 2: `X-Fleetdeck-Prompt` puts the registry's template in front of the messages."""

from __future__ import annotations

from console.gateway.call import Call
from console.gateway.openai_api import ApiError
from console.gateway.prompts import PromptError


async def apply_prompt(call: Call) -> None:
    trace, prompts = call.trace, call.services.prompts
    if trace.prompt_name is None or prompts is None:
        return
    try:
        trace.prompt_version = prompts.apply(trace.prompt_name, trace.prompt_version, call.body).version
    except PromptError as error:
        raise ApiError(400, str(error), param="X-Fleetdeck-Prompt", code=error.code) from None
