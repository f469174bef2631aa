"""The local model's hardware: settings from the policy (or the settings) to llama.cpp, and back.

On this CPU-only box ggml's registry lists one device, the CPU: a policy with
`n_gpu_layers: 0` and one that leaves it to the default both serve from the CPU with 0 of
SmolLM2-135M's 31 layers (30 repeating and the output layer) offloaded, as llama.cpp's
load log says. The values the policy sets are read back from the loaded `Llama`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import llama_cpp
import pydantic
import pytest
from gateway_process import REPO, Served

from console.engine import build_providers
from console.policy import PolicyError, load_policy, parse_policy
from console.providers import llama_devices
from console.providers.base import ProviderError
from console.providers.llama_devices import DERIVED, FROM_LOAD_LOG, Device, Placement
from console.providers.local import LocalProvider
from console.settings import Settings

SMOLLM2_LAYERS = 31  # 30 repeating layers and the output layer, as llama.cpp counts them
# llama.cpp's own word: no GPU (or iGPU) device and no RPC backend here.
CPU_ONLY = not llama_cpp.llama_supports_gpu_offload()

TWO_LOCALS = """
providers:
  pinned: {kind: local, model_name: pinned, n_gpu_layers: 0}
  auto: {kind: local, model_name: auto}
routes:
  - {intent: pinned, primary: pinned/pinned, max_retries: 0}
  - {intent: auto, primary: auto/auto, max_retries: 0}
default_route: auto
"""


@pytest.fixture(scope="module")
def policy() -> str:
    return TWO_LOCALS


def test_both_policies_run_and_report_the_cpu_with_no_layer_offloaded(served: Served) -> None:
    client = served.client()
    for route in ("pinned", "auto"):
        answer = client.chat.completions.create(
            model=f"route:{route}", messages=[{"role": "user", "content": "Say hi."}], max_tokens=4
        )
        assert answer.choices[0].message.content is not None
    providers = httpx.get(f"{served.url}/healthz", timeout=10).json()["providers"]
    pinned, auto = providers["pinned"], providers["auto"]
    for described in (pinned, auto):
        assert described["loaded"] is True
        assert described["layers"] == SMOLLM2_LAYERS
        assert described["offload_source"] == FROM_LOAD_LOG
        assert "CPU" in described["backends"]
    assert (pinned["device"], pinned["n_gpu_layers"], pinned["layers_offloaded"]) == ("cpu", 0, 0)
    if CPU_ONLY:
        assert auto["gpu_devices"] == [] and auto["backends"] == ["CPU"]
        assert (auto["device"], auto["n_gpu_layers"], auto["layers_offloaded"]) == ("cpu", 0, 0)
    else:  # a box with a GPU: the default is every layer on it
        assert auto["gpu_devices"] and auto["n_gpu_layers"] == -1
        assert (auto["device"], auto["layers_offloaded"]) == ("gpu", SMOLLM2_LAYERS)


def test_the_registry_lists_the_cpu_and_no_gpu_here() -> None:
    found = llama_devices.devices()
    assert [device.kind for device in found if device.kind == "cpu"] == ["cpu"]
    assert llama_devices.cpu_device_name() == "CPU"
    if CPU_ONLY:
        assert llama_devices.gpu_devices() == [] and llama_devices.backends() == ["CPU"]
    else:
        assert llama_devices.gpu_devices()


# --------------------------------------------------------------------------- settings → llama.cpp

HARDWARE = """
providers:
  local:
    kind: local
    n_ctx: 1536
    n_threads: 1
    n_gpu_layers: 7
    main_gpu: 0
routes:
  - {intent: general, primary: local/smollm2-135m}
"""


@pytest.fixture
def loaded(request: pytest.FixtureRequest) -> Iterator[LocalProvider]:
    """The policy's local provider, built as the Engine builds it, with its model loaded."""
    text, settings = request.param
    provider = build_providers(parse_policy(text), settings)["local"]
    assert isinstance(provider, LocalProvider)
    asyncio.run(provider.load())
    yield provider
    asyncio.run(provider.aclose())


@pytest.mark.parametrize("loaded", [(HARDWARE, Settings())], indirect=True)
def test_the_policy_values_reach_the_loaded_llama(loaded: LocalProvider) -> None:
    llm: Any = loaded._llm  # the llama_cpp.Llama the provider generates with
    assert llm.n_ctx() == 1536
    assert llm.context_params.n_threads == 1 and llm.context_params.n_threads_batch == 1
    assert llm.model_params.n_gpu_layers == 7
    assert llm.model_params.main_gpu == 0
    assert llm.model_params.split_mode == llama_cpp.LLAMA_SPLIT_MODE_NONE  # main_gpu: the model on one GPU
    described = loaded.describe()
    assert (described["n_ctx"], described["n_threads"], described["n_gpu_layers"]) == (1536, 1, 7)
    if CPU_ONLY:  # asked for 7, and llama.cpp had no GPU to put them on
        assert (described["device"], described["layers_offloaded"]) == ("cpu", 0)


DEFAULTS = "providers: {local: {kind: local}}\nroutes: [{intent: general, primary: local/smollm2-135m}]\n"
BY_SETTINGS = Settings(local_n_ctx=1024, local_n_threads=1, local_n_gpu_layers=3)


@pytest.mark.parametrize("loaded", [(DEFAULTS, BY_SETTINGS)], indirect=True)
def test_the_settings_apply_where_the_policy_says_nothing(loaded: LocalProvider) -> None:
    llm: Any = loaded._llm
    assert llm.n_ctx() == 1024 and llm.context_params.n_threads == 1
    assert llm.model_params.n_gpu_layers == 3
    assert llm.model_params.split_mode == llama_cpp.LLAMA_SPLIT_MODE_LAYER  # no main_gpu: spread over all


@pytest.mark.skipif(not CPU_ONLY, reason="the default is every layer on a GPU where there is one")
@pytest.mark.parametrize("loaded", [(DEFAULTS, Settings())], indirect=True)
def test_the_default_here_offloads_nothing(loaded: LocalProvider) -> None:
    assert loaded._llm.model_params.n_gpu_layers == 0
    assert loaded.describe()["layers_offloaded"] == 0


def test_the_policy_wins_over_the_settings() -> None:
    text = HARDWARE.replace("n_gpu_layers: 7", "n_gpu_layers: 0")
    provider = build_providers(parse_policy(text), BY_SETTINGS)["local"]
    assert isinstance(provider, LocalProvider)
    assert (provider.n_gpu_layers, provider.n_ctx, provider.n_threads) == (0, 1536, 1)


def test_a_main_gpu_that_is_not_there_is_refused_on_load_when_there_are_gpus() -> None:
    provider = LocalProvider(main_gpu=5)
    if CPU_ONLY:  # no GPU: llama.cpp runs on the CPU whatever main_gpu says
        asyncio.run(provider.load())
        assert provider.describe()["device"] == "cpu"
    else:
        with pytest.raises(ProviderError, match="main_gpu 5 is not a GPU here"):
            asyncio.run(provider.load())
    asyncio.run(provider.aclose())


# --------------------------------------------------------------------------- bad values


LAYERS = "Expected a whole number of layers to offload to the GPU (-1: all), got"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("n_gpu_layers", "lots", f"{LAYERS} 'lots'"),
        ("n_gpu_layers", "-5", f"{LAYERS} -5"),
        ("n_gpu_layers", "1.5", f"{LAYERS} 1.5"),
        ("n_gpu_layers", "true", f"{LAYERS} True"),
        ("n_gpu_layers", '"3"', f"{LAYERS} '3'"),
        ("n_gpu_layers", "[1]", f"{LAYERS} a list"),
        ("main_gpu", "-1", "Expected the index of a GPU: 0 or more, got -1"),
        ("n_threads", "0", "Expected a whole number of CPU threads, 1 or more, got 0"),
        ("n_ctx", "2k", "Expected a whole number of context tokens, 1 or more, got '2k'"),
    ],
)
def test_a_bad_value_is_refused_with_file_and_line(
    tmp_path: Path, field: str, value: str, expected: str
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        "providers:\n"
        "  local:\n"
        "    kind: local\n"
        f"    {field}: {value}\n"  # line 4
        "routes:\n"
        "  - {intent: general, primary: local/smollm2-135m}\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value) == f"{path}:4: providers.local.{field}: {expected}"


def test_policy_check_refuses_a_bad_n_gpu_layers(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("providers:\n  local: {kind: local, n_gpu_layers: lots}\nroutes: []\n")
    checked = subprocess.run(
        [sys.executable, "-m", "console", "policy", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 2
    assert f"{path}:2: providers.local.n_gpu_layers: Expected a whole number of layers" in checked.stderr


@pytest.mark.parametrize("value", ["lots", "1.5", "-5"])
def test_a_bad_setting_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FLEETDECK_LOCAL_N_GPU_LAYERS", value)
    with pytest.raises(pydantic.ValidationError, match="local_n_gpu_layers"):
        Settings()


# --------------------------------------------------------------------------- placement


def test_placement_counts_what_llama_cpp_logged() -> None:
    lines = [f"load_tensors: layer {n:3d} assigned to device CPU, is_swa = 0" for n in range(4)]
    lines += [f"load_tensors: layer {n:3d} assigned to device CUDA0, is_swa = 0" for n in range(4, 31)]
    logged = Placement.from_load_log(["llama_model_loader: other", *lines])
    assert logged == Placement(31, 27, ("CUDA0",), FROM_LOAD_LOG)
    assert Placement.from_load_log(["nothing about layers"]) is None


def test_a_derived_placement_follows_llama_cpps_rule() -> None:
    gpu = Device("CUDA0", "a GPU", "gpu", 24576, 20000)
    assert Placement.derived(-1, 30, [gpu]) == Placement(31, 31, ("CUDA0",), DERIVED)
    assert Placement.derived(12, 30, [gpu]).offloaded == 12
    assert Placement.derived(99, 30, [gpu]).offloaded == 31
    assert Placement.derived(-1, 30, []) == Placement(31, 0, (), DERIVED)
