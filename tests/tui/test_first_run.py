"""Live tail on the first run: calls served while the sample traces are still being imported
are on the Traffic pane at once, and stay above the sample once it is in."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx
from fakes.openai_upstream import FakeOpenAI
from textual.pilot import Pilot

from console.engine import Engine
from console.policy import parse_policy
from console.settings import Settings
from console.store.importer import ImportProgress
from console.tui.app import ConsoleOptions, FleetdeckApp
from console.tui.panes.traffic import TrafficPane

from .conftest import drive, loaded, show_traffic, until
from .test_with_gateway import POLICY

HOLD_S = 60.0  # a bound on holding the import, never a timing assertion


class HeldSetup:
    """Holds the first-run import at the chosen steps until the test lets it go on."""

    def __init__(self, *holds: Callable[[ImportProgress], bool]) -> None:
        self.holds = list(holds)
        self.held: ImportProgress | None = None
        self.seen: list[ImportProgress] = []
        self._go = threading.Event()

    def __call__(self, step: ImportProgress) -> None:  # on the setup thread
        self.seen.append(step)
        if self.holds and self.holds[0](step):
            self.holds.pop(0)
            self._go.clear()
            self.held = step
            self._go.wait(HOLD_S)

    def release(self) -> None:
        self.held = None
        self._go.set()


def checked_first_file(step: ImportProgress) -> bool:
    return step.step == "checked" and step.done == 1


def traces_inserted(step: ImportProgress) -> bool:  # inside the import's transaction
    return step.step == "inserted" and step.path is not None and step.path.stem == "traces"


async def call(url: str, key: str, workflow: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{url}/v1/chat/completions",
            json={"model": "route:general", "messages": [{"role": "user", "content": "first run"}]},
            headers={"Authorization": f"Bearer {key}", "x-fleetdeck-workflow": workflow},
        )
    assert response.status_code == 200, response.text


def on_traffic(traffic: TrafficPane, workflow: str) -> bool:
    return any(row.workflow_id == workflow for row in traffic.stream.rows)


def test_calls_made_during_the_first_run_import_are_on_the_traffic_pane(
    tmp_path: Path, upstream: FakeOpenAI
) -> None:
    held = HeldSetup(checked_first_file, traces_inserted)
    policy = parse_policy(POLICY.format(base_url=upstream.base_url))
    with Engine(Settings(data_dir=tmp_path / "empty")) as engine:
        app = FleetdeckApp(engine, ConsoleOptions(policy=policy, port=0, on_setup=held))

        async def scenario(pilot: Pilot[None]) -> None:
            url, key = app.context.gateway_url, app.context.dev_key
            assert url is not None and key is not None
            traffic = await show_traffic(pilot)
            for number in (1, 2):
                await until(pilot, lambda: held.held is not None, f"the import's hold {number}")
                assert app.setting_up
                await call(url, key, f"first-run-{number}")
                await until(pilot, lambda n=number: on_traffic(traffic, f"first-run-{n}"), f"call {number}")
                held.release()
            await until(pilot, lambda: not app.setting_up, "the first-run setup to end")
            assert app.seeded > 60_000
            await loaded(pilot, traffic, after=traffic.loads)
            newest = [row.workflow_id for row in traffic.stream.rows[:2]]
            assert newest == ["first-run-2", "first-run-1"]
            assert len(traffic.stream.rows) > 2  # the sample is there too, below the live calls
            await call(url, key, "after-setup")
            await until(pilot, lambda: traffic.stream.rows[0].workflow_id == "after-setup", "the next call")

        drive(app, scenario)
        assert [step.step for step in held.seen][-1] == "committed"
        assert engine.verify_audit().ok
