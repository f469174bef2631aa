"""The Fleet pane with the local model served: its device, its layers on a GPU, the build's backends."""

from __future__ import annotations

import httpx
import llama_cpp
from textual.pilot import Pilot
from textual.widgets import DataTable

from console.engine import Engine
from console.policy import parse_policy
from console.tui.app import ConsoleOptions, FleetdeckApp
from console.tui.readmodel.clock import frozen

from .conftest import FROZEN_NOW, drive, loaded, show, until

POLICY = """
providers:
  local: {kind: local}
routes:
  - {intent: general, primary: local/smollm2-135m, max_retries: 0}
default_route: general
"""


def local_row(app: FleetdeckApp) -> dict[str, str]:
    table = app.query_one("#fleet-providers", DataTable)
    columns = [str(column.label) for column in table.columns.values()]
    return dict(zip(columns, (str(cell) for cell in table.get_row_at(0)), strict=True))


def test_fleet_shows_the_local_models_device_layers_and_backends(console_engine: Engine) -> None:
    options = ConsoleOptions(seed=False, policy=parse_policy(POLICY), port=0, clock=frozen(FROZEN_NOW))
    app = FleetdeckApp(console_engine, options)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await show(pilot, "3", "fleet")
        await loaded(pilot, pane)
        before = local_row(app)
        assert (before["provider"], before["layers on GPU"]) == ("local", "not loaded")
        body = {"model": "route:general", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.post(
                f"{app.context.gateway_url}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {app.context.dev_key}"},
            )
        assert response.status_code == 200, response.text
        await until(pilot, lambda: local_row(app)["layers on GPU"] != "not loaded", "the model's layers")
        after = local_row(app)
        if llama_cpp.llama_supports_gpu_offload():  # a GPU here: every layer of SmolLM2 on it
            assert after["device"].startswith("GPU ") and after["layers on GPU"] == "31/31"
        else:  # this box
            assert (after["device"], after["layers on GPU"], after["backends"]) == ("CPU", "0/31", "CPU")

    drive(app, scenario)
