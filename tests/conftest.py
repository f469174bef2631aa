from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests never touch the user's keyring or config dir: secrets Fleetdeck makes for itself
# fall back to the 0600 file in a config dir of the test session's own (one entry per data
# dir, children inherit it), and the secret tests bring their own keyring backend.
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
os.environ["FLEETDECK_CONFIG_DIR"] = tempfile.mkdtemp(prefix="fleetdeck-tests-config-")

from console.engine import Engine
from console.settings import Settings

atexit.register(shutil.rmtree, os.environ["FLEETDECK_CONFIG_DIR"], True)

# Fake upstreams and served gateways (`upstream`, `served`, `gateway`, …), declared once.
pytest_plugins = ["gateway_fixtures"]  # tests/gateway_fixtures.py


# The files that take longest (`--durations` on two workers), dispatched first: `make test`
# hands whole files to its workers in collection order, and a long file near the end leaves
# the other worker idle while it runs. The rest keep their order.
LONGEST_FIRST = (
    "test_cluster.py",
    "test_injection_guard.py",
    "test_golden.py",
    "test_drift.py",
    "test_classifier.py",
    "test_cli.py",
    "test_lake_replicas.py",
    "test_gateway_faults.py",
    "tui/test_snapshots.py",
    "test_cache_shadow.py",
    "test_prompts_optimize.py",
    "test_retention.py",
    "test_judge.py",
    "tui/test_panes.py",
    "test_sample_traces.py",
    "test_calibrate.py",
    "tui/test_overview.py",
    "tui/test_sql_pane.py",
    "test_cli_progress.py",
    "test_recorder.py",
)
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.relative_to(TESTS).as_posix(), len(rank)))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    with Engine(settings) as running:
        running.start_recorder()
        yield running
