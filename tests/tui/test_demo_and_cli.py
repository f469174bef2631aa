"""`--demo` traffic through a real gateway, and `fleetdeck tui` where there is no terminal."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes.openai_upstream import FakeOpenAI

from console.demo import FEATURES, DemoTraffic
from console.engine import Engine
from console.policy import parse_policy
from console.settings import Settings


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[Engine, str]]:
    """A gateway whose every sample intent goes to a fake upstream; yields (engine, dev key)."""
    routes = "".join(
        f"  - intent: {intent}\n    primary: lab/mock-gpt\n    max_retries: 0\n"
        for intent in sorted({feature.intent for feature in FEATURES})
    )
    with FakeOpenAI(models=["mock-gpt"]) as fake, Engine(Settings(data_dir=tmp_path / "data")) as engine:
        policy = parse_policy(
            f"providers:\n  lab:\n    kind: openai_compat\n    base_url: {fake.base_url}\n"
            f"    prices: {{mock-gpt: {{input: 1.0, output: 2.0}}}}\nroutes:\n{routes}"
        )
        engine.open_gateway(policy, port=0)
        engine.start()
        key, _ = engine.console_key()
        yield engine, key


def test_demo_requests_are_served_and_traced_per_workflow(gateway: tuple[Engine, str]) -> None:
    engine, key = gateway
    demo = DemoTraffic(engine.url, key, seed=7)
    with httpx.Client(base_url=engine.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        statuses = [demo.send_one(client) for _ in range(12)]
    assert statuses == [200] * 12
    assert engine.recorder.flush()
    rows = (
        engine.db.cursor()
        .execute("SELECT DISTINCT workflow_id FROM traces WHERE route IS NOT NULL")
        .fetchall()
    )
    assert {row[0] for row in rows} <= {feature.workflow for feature in FEATURES}
    assert len(rows) >= 2


def test_demo_runs_on_its_thread_until_stopped(gateway: tuple[Engine, str]) -> None:
    engine, key = gateway
    demo = DemoTraffic(engine.url, key, pause_s=(0.01, 0.02), seed=1)
    demo.start()
    try:
        for _ in range(500):
            if demo.sent >= 3:
                break
            threading.Event().wait(0.02)
    finally:
        demo.stop()
    assert demo.sent >= 3 and demo.failed == 0


def test_tui_without_a_terminal_prints_a_summary(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "console", "tui", "--demo", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert "not a terminal" in done.stderr
    assert "imported the sample traces" in done.stdout
