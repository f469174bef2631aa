"""A fake OpenAI-compatible upstream: a real HTTP server on 127.0.0.1, with injectable faults.

It runs aiohttp.web on its own thread and event loop, so sync tests, `asyncio.run`
tests and other threads can all use it; every method below is thread-safe.

    from fakes.openai_upstream import Fault, FakeOpenAI

    with FakeOpenAI() as fake:                        # binds a free port on 127.0.0.1
        provider = OpenAICompatProvider("lab", fake.base_url, api_key="sk-test")
        fake.fail_next(2, Fault(status=429, retry_after=1))   # the next 2 requests get a 429
        fake.fail_for(0.5, Fault(status=503))          # every request for the next 0.5 s
        fake.fail_always(Fault(reset=True))            # every request until fake.clear_faults()
        fake.fail_ratio(0.3, Fault(status=500), seed=1)  # ~30 % of requests, reproducibly
        fake.push(Fault(status=503), Fault(delay_s=2))  # one-shot faults, in this order
        fake.fail_next(1, Fault(cut_after=3, stream=True))  # only a streaming request matches
        ...
        fake.requests[-1].headers["authorization"], fake.requests[-1].body["messages"]
        fake.connections, fake.open_connections, fake.streams_disconnected
        fake.reset()              # faults, records, stream counters (connection counts go on)

As pytest fixtures: one server per module, clean state per test:

    @pytest.fixture(scope="module")
    def fake() -> Iterator[FakeOpenAI]:
        with FakeOpenAI() as server:
            yield server

    @pytest.fixture(autouse=True)
    def _clean(fake: FakeOpenAI) -> None:
        fake.reset()

`fake.requests` lists `Recorded(method, path, headers (lower-case), body (parsed JSON),
raw, connection (which TCP connection, 1, 2, …), fault (the one applied), ts, sent (the
response body's bytes as written: a stream's SSE events, exactly))`.

Endpoints (under `/v1`): `chat/completions` (JSON, or SSE when `stream`; a usage chunk
when `stream_options.include_usage`), `completions`, `embeddings`, `models`. The answer
echoes the last user message (truncated at `max_tokens` words, finish_reason
"length"); token counts are words. With `tools` and tool_choice "required" or a named
function, the answer is a tool call with arguments `{"input": <last user message>}`.
With "required" and `parallel_tool_calls: true`, the answer is the echoed text followed
by one call per tool, arguments `{"input": …, "tool": <its name>}`; streamed, the text
comes first, then the calls' deltas taking turns by index (id and name in each call's
first delta, its arguments in 8-character pieces), as parallel calls stream.

A request takes the first queued fault that matches it (`fail_next`, `push`), else the
first standing rule that matches (`fail_for`, `fail_always`, `fail_ratio`, in the order
they were added); no fault means a normal answer. Faults apply before the api-key check.
`Fault(...)` with only delays set is a slow but correct answer. Fields of `Fault`:

    status          answer this HTTP status with an OpenAI error body {"error": {...}}
    error_code      error.code (default per status, e.g. 429 → "rate_limit_exceeded");
                    "context_length_exceeded" or "content_filter" for those 400s
    message         error.message; "{authorization}" is replaced by the request's
                    Authorization header ("{x_api_key}" by x-api-key) to test redaction
    retry_after     Retry-After header: seconds (number) or an HTTP-date (string)
    retry_after_ms  retry-after-ms header
    delay_s         sleep before responding at all
    first_chunk_delay_s, chunk_delay_s   streams: sleep before the first chunk / between chunks
    stall_at, stall_s   streams: sleep stall_s before the event at index stall_at (negative:
                    from the end, [DONE] being -1; -2 is the usage chunk when there is one)
    reset           abort the connection with a TCP RST, no response
    close           close the connection (FIN) without a response
    malformed       200 whose body is not JSON; streams: a `data:` line that is not JSON
    wrong_shape     200 with JSON that is not a completion ({"object": "banana"}), also
                    to a streaming request
    cut_body        send the headers and half of the JSON body, then close
    cut_after       streams: close the connection after K chunks (`data:` events), no [DONE]
    finish_after    streams: end the response cleanly after K chunks, but without [DONE]
    error_after     streams: after K chunks send `data: {"error": {...}}` (status 500
                    semantics, `message` used), then [DONE]
    paths           only requests to these paths, e.g. ("/v1/chat/completions",)
    stream          only streaming (True) or non-streaming (False) requests

`fake.responder = function(body) -> str | None` answers a chat request with that text instead of
the echo (None: the echo), e.g. a model whose answer depends on the system prompt.
`fake.cached_tokens = N` reports N cached prompt tokens in every chat usage;
`fake.reasoning_tokens = N` adds N reasoning tokens to every chat answer's completion tokens.

Counters: `connections` (TCP connections accepted), `open_connections`,
`streams_completed`, `streams_cut` (by a fault), `streams_disconnected` (the client
went away mid-stream). `wait_until(predicate)` polls for a condition from sync code,
`await_until` from async code. `FakeOpenAI(api_key="k")` answers 401 to any other key.

Run standalone for benchmarks: `python tests/fakes/openai_upstream.py --port 9100`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

Body = dict[str, Any]
JSON = "application/json"
_CLIENT_GONE = ConnectionError  # writing to a closed connection: aiohttp's ClientConnectionResetError


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one request instead of (or on top of) answering it; see the module docstring."""

    status: int | None = None
    error_code: str | None = None
    message: str | None = None
    retry_after: float | str | None = None
    retry_after_ms: float | None = None
    delay_s: float = 0.0
    first_chunk_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    stall_at: int | None = None
    stall_s: float = 0.0
    reset: bool = False
    close: bool = False
    malformed: bool = False
    wrong_shape: bool = False
    cut_body: bool = False
    cut_after: int | None = None
    finish_after: int | None = None
    error_after: int | None = None
    paths: tuple[str, ...] | None = None
    stream: bool | None = None

    def matches(self, path: str, stream: bool) -> bool:
        return (self.paths is None or path in self.paths) and (self.stream is None or self.stream == stream)

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.retry_after is not None:
            headers["retry-after"] = str(self.retry_after)
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = str(self.retry_after_ms)
        return headers


@dataclass(slots=True)
class _Rule:
    fault: Fault
    until: float = float("inf")  # time.monotonic() deadline
    ratio: float = 1.0
    rng: random.Random | None = None


class FaultPlan:
    """Queued one-shot faults and standing rules, shared between the test thread and the server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._rules: list[_Rule] = []

    def push(self, *faults: Fault) -> None:
        with self._lock:
            self._queue.extend(faults)

    def fail_next(self, n: int, fault: Fault) -> None:
        self.push(*([fault] * n))

    def fail_for(self, seconds: float, fault: Fault) -> None:
        self._add(_Rule(fault, until=time.monotonic() + seconds))

    def fail_always(self, fault: Fault) -> None:
        self._add(_Rule(fault))

    def fail_ratio(self, ratio: float, fault: Fault, seed: int = 0) -> None:
        self._add(_Rule(fault, ratio=ratio, rng=random.Random(seed)))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._rules.clear()

    @property
    def pending(self) -> int:
        """Queued one-shot faults not yet taken."""
        return len(self._queue)

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def take(self, path: str, stream: bool) -> Fault | None:
        if not self._queue and not self._rules:
            return None
        with self._lock:
            for index, fault in enumerate(self._queue):
                if fault.matches(path, stream):
                    del self._queue[index]
                    return fault
            now = time.monotonic()
            self._rules = [rule for rule in self._rules if rule.until > now]
            for rule in self._rules:
                if rule.fault.matches(path, stream) and (rule.rng is None or rule.rng.random() < rule.ratio):
                    return rule.fault
        return None


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None
    raw: bytes
    connection: int  # which accepted TCP connection carried it (1, 2, …)
    fault: Fault | None
    ts: float = field(default_factory=time.monotonic)
    sent: bytearray = field(default_factory=bytearray)  # the response body's bytes, as they were written


RECORDED = web.RequestKey("recorded", Recorded)  # a request's record, to note what was sent
Handler = Callable[[web.Request, Any, Fault | None], Awaitable[web.StreamResponse]]


def words(text: str) -> int:
    return len(text.split())


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
        return " ".join(parts)
    return ""


def last_user_text(messages: Any) -> str:
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def prompt_tokens(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    return sum(3 + words(text_of(m.get("content"))) for m in messages if isinstance(m, dict))


def limit_words(text: str, limit: Any) -> tuple[list[str], bool]:
    """The answer's word pieces (each with its leading space) and whether max_tokens cut it."""
    pieces = [(" " if i else "") + word for i, word in enumerate(text.split())]
    if isinstance(limit, int) and 0 <= limit < len(pieces):
        return pieces[:limit], True
    return pieces, False


def sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    return (b"event: " + event.encode() + b"\n" if event else b"") + b"data: " + payload + b"\n\n"


class FakeUpstream:
    """The server machinery: thread, loop, recording, faults, counters. Subclasses add the routes."""

    url_suffix = ""

    def __init__(self, *, port: int = 0, api_key: str | None = None, record_limit: int = 20_000) -> None:
        self.answer_headers: dict[str, str] = {}  # sent with every answer (e.g. x-ratelimit-*)
        self.api_key = api_key
        self.faults = FaultPlan()
        self._records: deque[Recorded] = deque(maxlen=record_limit)
        self._ids = itertools.count(1)
        self._sock = socket.create_server(("127.0.0.1", port), backlog=4096)
        self.port: int = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._conn_ids: dict[int, int] = {}  # id(RequestHandler) → connection number
        self._counters = dict.fromkeys(
            ("connections", "open", "completed", "cut", "disconnected", "in_flight", "peak_in_flight"), 0
        )

    # --- lifecycle ---------------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + self.url_suffix

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._run, name=f"{type(self).__name__}:{self.port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def serve_forever(self) -> None:
        self._run()

    def _run(self) -> None:
        self._loop = loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        finally:
            tasks = asyncio.all_tasks(loop)  # handlers still sleeping in a delay fault
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.add_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        self._count_connections(runner)
        await web.SockSite(runner, self._sock, backlog=4096).start()
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    def _count_connections(self, runner: web.AppRunner) -> None:
        server = runner.server
        assert server is not None
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            self._counters["connections"] += 1
            self._counters["open"] += 1
            self._conn_ids[id(handler)] = self._counters["connections"]
            made(handler, transport)

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            self._counters["open"] -= 1
            self._conn_ids.pop(id(handler), None)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    # --- test-side API -----------------------------------------------------------------------------

    def push(self, *faults: Fault) -> None:
        self.faults.push(*faults)

    def fail_next(self, n: int, fault: Fault) -> None:
        self.faults.fail_next(n, fault)

    def fail_for(self, seconds: float, fault: Fault) -> None:
        self.faults.fail_for(seconds, fault)

    def fail_always(self, fault: Fault) -> None:
        self.faults.fail_always(fault)

    def fail_ratio(self, ratio: float, fault: Fault, seed: int = 0) -> None:
        self.faults.fail_ratio(ratio, fault, seed)

    def clear_faults(self) -> None:
        self.faults.clear()

    def reset(self) -> None:
        """Clear faults, recorded requests and the stream counters (connection counts stay true)."""
        self.faults.clear()
        self.answer_headers = {}
        self._records.clear()
        for name in ("completed", "cut", "disconnected", "peak_in_flight"):
            self._counters[name] = 0

    @property
    def requests(self) -> list[Recorded]:
        return list(self._records)

    @property
    def last_request(self) -> Recorded:
        return self._records[-1]

    @property
    def request_count(self) -> int:
        return len(self._records)

    @property
    def connections(self) -> int:
        return self._counters["connections"]

    @property
    def open_connections(self) -> int:
        return self._counters["open"]

    @property
    def peak_in_flight(self) -> int:
        """The most requests the fake was answering at once since the last reset."""
        return self._counters["peak_in_flight"]

    @property
    def streams_completed(self) -> int:
        return self._counters["completed"]

    @property
    def streams_cut(self) -> int:
        return self._counters["cut"]

    @property
    def streams_disconnected(self) -> int:
        return self._counters["disconnected"]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    async def await_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    # --- request handling --------------------------------------------------------------------------

    def endpoint(self, respond: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap a protocol handler with recording, faults and the api-key check."""

        async def handle(request: web.Request) -> web.StreamResponse:
            counters = self._counters
            counters["in_flight"] += 1
            counters["peak_in_flight"] = max(counters["peak_in_flight"], counters["in_flight"])
            try:
                return await answer(request)
            finally:
                counters["in_flight"] -= 1

        async def answer(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                body = None
            stream = isinstance(body, dict) and bool(body.get("stream"))
            fault = self.faults.take(request.path, stream)
            request[RECORDED] = self._record(request, body, raw, fault)
            if fault is not None:
                early = await self._before(request, fault)
                if early is not None:
                    return early
            if self.api_key is not None and not self.authorized(request):
                return self.error_response(request, Fault(status=401))
            return await respond(request, body, fault)

        return handle

    def _record(self, request: web.Request, body: Any, raw: bytes, fault: Fault | None) -> Recorded:
        connection = self._conn_ids.get(id(request.protocol), 0)
        headers = {k.lower(): v for k, v in request.headers.items()}
        recorded = Recorded(request.method, request.path, headers, body, raw, connection, fault)
        self._records.append(recorded)
        return recorded

    async def _before(self, request: web.Request, fault: Fault) -> web.StreamResponse | None:
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.reset or fault.close:
            drop(request, reset=fault.reset)
            return web.Response()  # aiohttp drops it: the transport is gone
        if fault.status is not None:
            return self.error_response(request, fault)
        return None

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def error_response(self, request: web.Request, fault: Fault) -> web.Response:
        raise NotImplementedError

    def error_message(self, request: web.Request, fault: Fault, default: str) -> str:
        message = fault.message or default
        message = message.replace("{authorization}", request.headers.get("authorization", ""))
        return message.replace("{x_api_key}", request.headers.get("x-api-key", ""))

    async def send_json(self, request: web.Request, payload: Any, fault: Fault | None) -> web.StreamResponse:
        body = orjson.dumps(payload)
        if fault is not None and fault.cut_body:
            response = web.StreamResponse(headers={"content-type": JSON, "content-length": str(len(body))})
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            drop(request, reset=False)
            return response
        _sent(request, body)
        return web.Response(body=body, content_type=JSON, headers=self.answer_headers)

    async def send_events(
        self, request: web.Request, events: list[bytes], fault: Fault | None
    ) -> web.StreamResponse:
        """Stream pre-rendered SSE events, applying the fault's delays and cut."""
        if fault is not None and fault.finish_after is not None:
            events = events[: fault.finish_after]
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache", **self.answer_headers}
        )
        await response.prepare(request)
        try:
            if fault is None or not (
                fault.first_chunk_delay_s or fault.chunk_delay_s or fault.cut_after or fault.stall_s
            ):
                await response.write(_sent(request, b"".join(events)))
            elif not await self._trickle(request, response, events, fault):
                return response
            await response.write_eof()
        except _CLIENT_GONE:
            self._counters["disconnected"] += 1
            return response
        self._counters["completed"] += 1
        return response

    async def _trickle(
        self, request: web.Request, response: web.StreamResponse, events: list[bytes], fault: Fault
    ) -> bool:
        stall = None if fault.stall_at is None else fault.stall_at % len(events)
        for index, event in enumerate(events):
            if index == stall:
                await asyncio.sleep(fault.stall_s)
            if fault.cut_after is not None and index >= fault.cut_after:
                self._counters["cut"] += 1
                drop(request, reset=False)
                return False
            delay = fault.first_chunk_delay_s if index == 0 else fault.chunk_delay_s
            if delay:
                await asyncio.sleep(delay)
            await response.write(_sent(request, event))
        return True


def _sent(request: web.Request, data: bytes) -> bytes:
    """Note `data` as sent in the request's record (`Recorded.sent`)."""
    recorded = request.get(RECORDED)
    if recorded is not None:
        recorded.sent.extend(data)
    return data


def drop(request: web.Request, *, reset: bool) -> None:
    """Close the connection under a request: a TCP RST (`reset`) or a FIN, without finishing the response."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


# --- the OpenAI protocol ----------------------------------------------------------------------------

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", None),
    429: ("requests", "rate_limit_exceeded"),
}


class FakeOpenAI(FakeUpstream):
    """The fake OpenAI-compatible upstream; `base_url` ends in `/v1`."""

    url_suffix = "/v1"

    def __init__(
        self, *, port: int = 0, api_key: str | None = None, models: list[str] | None = None, **kw: Any
    ) -> None:
        super().__init__(port=port, api_key=api_key, **kw)
        self.models = models or ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
        self.cached_tokens = 0  # prompt_tokens_details.cached_tokens of every chat usage
        self.reasoning_tokens = 0  # completion_tokens_details.reasoning_tokens, on top of the answer's
        self.responder: Callable[[Body], str | None] | None = None  # a chat answer's text; None: the echo

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.endpoint(self._chat))
        app.router.add_post("/v1/completions", self.endpoint(self._completions))
        app.router.add_post("/v1/embeddings", self.endpoint(self._embeddings))
        app.router.add_get("/v1/models", self.endpoint(self._models))

    def error_response(self, request: web.Request, fault: Fault) -> web.Response:
        status = fault.status or 500
        kind, code = _ERROR_TYPES.get(status, ("server_error", None))
        message = self.error_message(request, fault, f"The fake upstream answered {status}.")
        error = {"message": message, "type": kind, "param": None, "code": fault.error_code or code}
        return web.Response(
            status=status, body=orjson.dumps({"error": error}), content_type=JSON, headers=fault.headers()
        )

    def _oneshot(self, fault: Fault | None) -> web.Response | None:
        if fault is not None and fault.malformed:
            return web.Response(body=b'{"id": "chatcmpl-broken", "choices": [', content_type=JSON)
        if fault is not None and fault.wrong_shape:
            return web.Response(body=b'{"object": "banana"}', content_type=JSON)
        return None

    async def _chat(self, request: web.Request, body: Any, fault: Fault | None) -> web.StreamResponse:
        stream = isinstance(body, dict) and body.get("stream")
        early = self._oneshot(fault) if not stream or (fault and fault.wrong_shape) else None
        if early is not None:
            return early
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self.error_response(request, Fault(status=400, message="messages is required"))
        text = self.responder(body) if self.responder is not None else None
        answer = _ChatAnswer(body, next(self._ids), self.cached_tokens, self.reasoning_tokens, text)
        if body.get("stream"):
            return await self.send_events(request, self._stream_events(request, answer, body, fault), fault)
        return await self.send_json(request, answer.completion(), fault)

    def _stream_events(
        self, request: web.Request, answer: _ChatAnswer, body: Body, fault: Fault | None
    ) -> list[bytes]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = [sse(chunk) for chunk in answer.chunks(include_usage)]
        if fault is not None and fault.malformed:
            events.insert(1, b"data: {not json\n\n")
        if fault is not None and fault.error_after is not None:
            message = self.error_message(request, fault, "The fake upstream failed mid-stream.")
            error = {"message": message, "type": "server_error", "param": None, "code": fault.error_code}
            events = [*events[: fault.error_after], sse({"error": error})]
        return [*events, b"data: [DONE]\n\n"]

    async def _completions(self, request: web.Request, body: Any, fault: Fault | None) -> web.StreamResponse:
        early = self._oneshot(fault)
        if early is not None:
            return early
        body = body if isinstance(body, dict) else {}
        prompt = body.get("prompt")
        prompt = prompt[0] if isinstance(prompt, list) and prompt and isinstance(prompt[0], str) else prompt
        text = prompt if isinstance(prompt, str) else ""
        pieces, cut = limit_words(text, body.get("max_tokens"))
        result = {
            "id": f"cmpl-fake{next(self._ids)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model") or "gpt-3.5-turbo-instruct",
            "choices": [
                {
                    "text": "".join(pieces),
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": "length" if cut else "stop",
                }
            ],
            "usage": _usage(words(text), len(pieces)),
        }
        return await self.send_json(request, result, fault)

    async def _embeddings(self, request: web.Request, body: Any, fault: Fault | None) -> web.StreamResponse:
        early = self._oneshot(fault)
        if early is not None:
            return early
        body = body if isinstance(body, dict) else {}
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else [str(x) for x in inputs or []]
        dims = min(int(body.get("dimensions") or 8), MAX_DIMENSIONS)  # a fuzzer's 10⁸ would stall the loop
        data = [{"object": "embedding", "index": i, "embedding": embed(t, dims)} for i, t in enumerate(texts)]
        tokens = sum(words(t) for t in texts)
        result = {
            "object": "list",
            "data": data,
            "model": body.get("model") or "text-embedding-3-small",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return await self.send_json(request, result, fault)

    async def _models(self, request: web.Request, body: Any, fault: Fault | None) -> web.StreamResponse:
        data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in self.models]
        return await self.send_json(request, {"object": "list", "data": data}, fault)


def _usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> Body:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion + reasoning,
        "total_tokens": prompt + completion + reasoning,
        "prompt_tokens_details": {"cached_tokens": min(cached, prompt), "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
    }


MAX_DIMENSIONS = 3072  # text-embedding-3-large's


def embed(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for a text."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(dims)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [x / norm for x in raw]


class _ChatAnswer:
    """The deterministic answer to one chat request, as a completion or as chunks."""

    def __init__(
        self, body: Body, number: int, cached: int = 0, reasoning: int = 0, text: str | None = None
    ) -> None:
        self.id = f"chatcmpl-fake{number}"
        self.cached, self.reasoning = cached, reasoning
        self.model = body.get("model") or "gpt-4o-mini"
        self.created = int(time.time())
        text = last_user_text(body["messages"]) if text is None else text
        self.prompt_tokens = prompt_tokens(body["messages"])
        self.tool_calls = _forced_tool_calls(body, text, number)
        parallel = len(self.tool_calls) > 1 or body.get("parallel_tool_calls") is True
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        self.pieces, cut = ([], False) if self.tool_calls and not parallel else limit_words(text, limit)
        self.finish_reason = "tool_calls" if self.tool_calls else ("length" if cut else "stop")
        self.completion_tokens = 8 * len(self.tool_calls) + len(self.pieces)

    def usage(self) -> Body:
        return _usage(self.prompt_tokens, self.completion_tokens, self.cached, self.reasoning)

    def completion(self) -> Body:
        message: Body = {"role": "assistant", "content": "".join(self.pieces) if self.pieces else None}
        if not self.tool_calls:
            message["content"] = message["content"] or ""
        message["refusal"] = None
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return {
            **self._envelope("chat.completion"),
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason}
            ],
            "usage": self.usage(),
        }

    def chunks(self, include_usage: bool) -> Iterator[Body]:
        yield self._chunk({"role": "assistant", "content": "", "refusal": None}, include_usage)
        for piece in self.pieces:  # text first, then the tool calls
            yield self._chunk({"content": piece}, include_usage)
        for delta in _interleaved(self.tool_calls):
            yield self._chunk({"tool_calls": [delta]}, include_usage)
        yield self._chunk({}, include_usage, self.finish_reason)
        if include_usage:
            yield {**self._envelope("chat.completion.chunk"), "choices": [], "usage": self.usage()}

    def _envelope(self, kind: str) -> Body:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
        }

    def _chunk(self, delta: Body, include_usage: bool, finish_reason: str | None = None) -> Body:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        chunk = {**self._envelope("chat.completion.chunk"), "choices": [choice]}
        if include_usage:
            chunk["usage"] = None
        return chunk


def _forced_tool_calls(body: Body, text: str, number: int) -> list[Body]:
    """The named tool; the first tool for "required"; every tool for "required" with
    `parallel_tool_calls: true`."""
    tools = [t.get("function") or {} for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    if not tools or choice in (None, "auto", "none"):
        return []
    names = [tools[0].get("name")]
    if isinstance(choice, dict):
        names = [(choice.get("function") or {}).get("name") or names[0]]
    elif body.get("parallel_tool_calls") is True:
        names = [tool.get("name") for tool in tools]
    if len(names) == 1:
        arguments = orjson.dumps({"input": text}).decode()
        return [
            {
                "id": f"call_fake{number}",
                "type": "function",
                "function": {"name": names[0], "arguments": arguments},
            }
        ]
    return [
        {
            "id": f"call_fake{number}_{position}",
            "type": "function",
            "function": {"name": name, "arguments": orjson.dumps({"input": text, "tool": name}).decode()},
        }
        for position, name in enumerate(names)
    ]


def _interleaved(calls: list[Body]) -> Iterator[Body]:
    """Tool-call deltas as a parallel stream sends them: each call's id and name first, its
    arguments in 8-character pieces, the calls taking turns (index 0, 1, 0, 1, …)."""
    parts = []
    for index, call in enumerate(calls):
        function = call["function"]
        head = {**call, "index": index, "function": {"name": function["name"], "arguments": ""}}
        arguments = function["arguments"]
        pieces = [
            {"index": index, "function": {"arguments": arguments[start : start + 8]}}
            for start in range(0, len(arguments), 8)
        ]
        parts.append([head, *pieces])
    for turn in itertools.zip_longest(*parts):
        yield from (delta for delta in turn if delta is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the fake OpenAI-compatible upstream.")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--api-key")
    args = parser.parse_args()
    fake = FakeOpenAI(port=args.port, api_key=args.api_key)
    print(f"fake OpenAI upstream on {fake.base_url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        fake.serve_forever()


if __name__ == "__main__":
    main()
