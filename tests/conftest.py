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


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    with Engine(settings) as running:
        running.start_recorder()
        yield running
