from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from console.engine import Engine
from console.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    with Engine(settings) as running:
        running.start()
        yield running
