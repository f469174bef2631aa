"""Fake upstreams and served gateways, declared once for every test module.

A pytest plugin: tests/conftest.py names it in `pytest_plugins` (not "fixtures": pytest's
own `_pytest.fixtures` is registered under that name). A module says what differs by
declaring a fixture of the same name; everything else comes from here.

    POLICY = '''
    providers:
      lab: {{kind: openai_compat, base_url: "{url}"}}
    routes:
      - {{intent: support, primary: lab/m}}
    '''

    @pytest.fixture(scope="module")
    def policy(upstream: FakeOpenAI) -> str:
        return POLICY.format(url=upstream.base_url)

    def test_something(served: Served, upstream: FakeOpenAI) -> None: ...

Module scope (one per test module):

    upstream     one FakeOpenAI on 127.0.0.1
    upstreams    two of them, (primary, backup) or (small, big) as the module's policy names them
    policy       the routes policy `served` starts with; None (the default) is the shipped policy
    served_env   extra environment for the `fleetdeck serve` child; None by default
    data_dir     the served instance's data dir, a fresh folder named after the module.
                 Declare it again to check the store once the instance has stopped: its
                 teardown runs after `served` has stopped and released the database.
    served       a real `fleetdeck serve --port 0` on `policy` over `data_dir`

Function scope (a fresh instance for every test):

    gateway_policy  the policy `gateway` starts with; `policy` unless the module says otherwise
    gateway_dir     tmp_path / "data"; declare it again like `data_dir`
    gateway         a real `fleetdeck serve` on `gateway_policy` over `gateway_dir`; the
                    module's upstreams are reset before it starts

The fakes are not reset between the tests that share `served`: a module that wants clean
records per test asks for `clean_upstream` (e.g. `pytestmark = pytest.mark.usefixtures(...)`)
or resets them itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import Served, fleetdeck_serve


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with FakeOpenAI() as first, FakeOpenAI() as second:
        yield first, second


@pytest.fixture
def clean_upstream(upstream: FakeOpenAI) -> None:
    """Faults, records and stream counters of `upstream` cleared before the test."""
    upstream.reset()


@pytest.fixture(scope="module")
def policy() -> str | None:
    return None


@pytest.fixture(scope="module")
def served_env() -> dict[str, str] | None:
    return None


@pytest.fixture(scope="module")
def data_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    name = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    return tmp_path_factory.mktemp(name) / "data"


@pytest.fixture(scope="module")
def served(data_dir: Path, policy: str | None, served_env: dict[str, str] | None) -> Iterator[Served]:
    with fleetdeck_serve(data_dir, policy, served_env) as instance:
        yield instance


@pytest.fixture
def gateway_policy(policy: str | None) -> str | None:
    return policy


@pytest.fixture
def gateway_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def gateway(
    request: pytest.FixtureRequest,
    gateway_dir: Path,
    gateway_policy: str | None,
    served_env: dict[str, str] | None,
) -> Iterator[Served]:
    for name in ("upstream", "upstreams"):
        if name in request.fixturenames:
            found = request.getfixturevalue(name)
            for fake in found if isinstance(found, tuple) else (found,):
                fake.reset()
    with fleetdeck_serve(gateway_dir, gateway_policy, served_env) as instance:
        yield instance
