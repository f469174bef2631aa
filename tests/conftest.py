from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests never touch the user's keyring: secrets Fleetdeck makes for itself fall back to
# the data dir's 0600 file, and the secret tests bring their own keyring backend.
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"

from console.engine import Engine
from console.settings import Settings

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
