"""What llama.cpp offers here: the build's backends, its devices, and where a model's layers went.

`llama_supports_gpu_offload()` says whether the build could offload; this asks ggml's
backend registry for the devices it actually found (`ggml_backend_dev_count`, `_get`,
`_type`, …), which llama-cpp-python loads (`llama_cpp._ggml.libggml`) but does not bind.
A CUDA build on a box without a GPU lists the CUDA backend and no GPU device.

Where a loaded model's layers went is llama.cpp's own account: while it loads, it logs
`load_tensors: layer N assigned to device D` for each repeating layer and the output layer;
`Placement.from_load_log` counts those. If a build logs no such lines, the count is derived
from the setting and the GPU devices the way llama.cpp assigns them, and says so.
"""

from __future__ import annotations

import ctypes
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# enum ggml_backend_dev_type (ggml-backend.h)
_DEVICE_KINDS = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}
_OFFLOAD_KINDS = {"gpu", "igpu"}  # what llama.cpp offloads layers to (RPC servers aside)
_LAYER_LINE = re.compile(r"load_tensors: layer\s+(\d+) assigned to device ([^,\s]+)")
FROM_LOAD_LOG = "llama.cpp load log"
DERIVED = "derived from n_gpu_layers and the GPU devices found"
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Device:
    """One device in ggml's registry."""

    name: str  # CPU, CUDA0, MTL0, Vulkan0, …
    description: str
    kind: str  # cpu | gpu | igpu | accel | meta
    memory_total_mib: int
    memory_free_mib: int

    @property
    def offloads(self) -> bool:
        return self.kind in _OFFLOAD_KINDS

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "memory_total_mib": self.memory_total_mib,
            "memory_free_mib": self.memory_free_mib,
        }


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a loaded model's layers are: `offloaded` of `layers` (llama.cpp counts the output layer)."""

    layers: int
    offloaded: int
    devices: tuple[str, ...]  # the devices holding offloaded layers
    source: str  # FROM_LOAD_LOG or DERIVED

    @classmethod
    def from_load_log(cls, lines: Iterable[str], cpu_name: str = "CPU") -> Placement | None:
        """llama.cpp's `layer N assigned to device D` lines; None when there are none."""
        assigned: dict[int, str] = {}
        for line in lines:
            if found := _LAYER_LINE.search(line):
                assigned[int(found[1])] = found[2]
        if not assigned:
            return None
        offloaded = [device for device in assigned.values() if device != cpu_name]
        return cls(len(assigned), len(offloaded), tuple(dict.fromkeys(offloaded)), FROM_LOAD_LOG)

    @classmethod
    def derived(cls, n_gpu_layers: int, n_layer: int, gpus: list[Device]) -> Placement:
        """llama.cpp's rule: no GPU device, nothing offloaded; else min(n_gpu_layers, n_layer + 1), -1 all."""
        layers = n_layer + 1
        wanted = layers if n_gpu_layers < 0 else n_gpu_layers
        offloaded = min(wanted, layers) if gpus else 0
        return cls(layers, offloaded, tuple(gpu.name for gpu in gpus) if offloaded else (), DERIVED)

    def describe(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "layers_offloaded": self.offloaded,
            "offload_devices": list(self.devices),
            "offload_source": self.source,
        }


def backends() -> list[str]:
    """The backends this llama.cpp build registered: ["CPU"] here; ["CUDA", "CPU"] on a CUDA build."""
    lib = _ggml()
    return [
        _text(lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)))
        for i in range(lib.ggml_backend_reg_count())
    ]


def devices() -> list[Device]:
    """Every device the build's backends found on this machine, CPU included."""
    lib = _ggml()
    found = []
    for index in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(index)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        found.append(
            Device(
                name=_text(lib.ggml_backend_dev_name(dev)),
                description=_text(lib.ggml_backend_dev_description(dev)),
                kind=_DEVICE_KINDS.get(int(lib.ggml_backend_dev_type(dev)), "unknown"),
                memory_total_mib=total.value // MIB,
                memory_free_mib=free.value // MIB,
            )
        )
    return found


def gpu_devices() -> list[Device]:
    """The devices llama.cpp would offload layers to: discrete GPUs, else integrated ones."""
    found = [device for device in devices() if device.offloads]
    discrete = [device for device in found if device.kind == "gpu"]
    return discrete or found


def cpu_device_name() -> str:
    return next((device.name for device in devices() if device.kind == "cpu"), "CPU")


@functools.cache
def _ggml() -> Any:
    """libggml as llama-cpp-python loaded it, with the registry's prototypes declared."""
    from llama_cpp import _ggml as loaded

    lib = loaded.libggml
    pointer, size = ctypes.c_void_p, ctypes.c_size_t
    prototypes: dict[str, tuple[list[Any], Any]] = {
        "ggml_backend_load_all": ([], None),
        "ggml_backend_reg_count": ([], size),
        "ggml_backend_reg_get": ([size], pointer),
        "ggml_backend_reg_name": ([pointer], ctypes.c_char_p),
        "ggml_backend_dev_count": ([], size),
        "ggml_backend_dev_get": ([size], pointer),
        "ggml_backend_dev_name": ([pointer], ctypes.c_char_p),
        "ggml_backend_dev_description": ([pointer], ctypes.c_char_p),
        "ggml_backend_dev_type": ([pointer], ctypes.c_int),
        "ggml_backend_dev_memory": ([pointer, ctypes.POINTER(size), ctypes.POINTER(size)], None),
    }
    for name, (argtypes, restype) in prototypes.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, restype
    if not lib.ggml_backend_reg_count():  # a build with backends as plugins registers them on demand
        lib.ggml_backend_load_all()
    return lib


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw else ""
