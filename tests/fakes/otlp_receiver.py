"""A real OTLP/HTTP receiver on 127.0.0.1: what an OpenTelemetry collector would be sent.

It takes `POST /v1/traces`, `/v1/metrics` and `/v1/logs` (protobuf), decodes them with
opentelemetry-proto, and keeps the spans, the histogram points, the events (log records
with an event name) and the raw bytes:

    with OtlpReceiver() as receiver:
        ...  # point an exporter at receiver.url
        span = receiver.wait_for_span(lambda s: s.attributes.get("fleetdeck.request_id") == rid)
        assert receiver.wait_for_metric("gen_ai.client.token.usage")

Waiting is on a condition the handlers notify, never a sleep. `hold()` makes the receiver
keep every export request waiting until `release()` (a collector that is slow to answer).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str  # hex
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: int
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str


@dataclass(frozen=True)
class ReceivedPoint:
    metric: str
    unit: str
    count: int
    total: float
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass
class OtlpReceiver:
    spans: list[ReceivedSpan] = field(default_factory=list)
    points: list[ReceivedPoint] = field(default_factory=list)
    events: list[ReceivedEvent] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)  # every request body, as it came
    headers: list[dict[str, str]] = field(default_factory=list)  # every request's headers

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._changed = threading.Condition()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._open: asyncio.Event | None = None  # set: requests are answered; cleared: they wait
        self.waiting = 0  # requests held
        self._thread = threading.Thread(target=self._run, name=f"otlp-receiver:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- waiting ------------------------------------------------------------------------

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def wait_for_span(self, match: Callable[[ReceivedSpan], bool], timeout: float = 15.0) -> ReceivedSpan:
        assert self.wait_until(lambda: any(match(s) for s in self.spans), timeout), "no such span arrived"
        return next(s for s in self.spans if match(s))

    def wait_for_event(self, match: Callable[[ReceivedEvent], bool], timeout: float = 15.0) -> ReceivedEvent:
        assert self.wait_until(lambda: any(match(e) for e in self.events), timeout), "no such event arrived"
        return next(e for e in self.events if match(e))

    def wait_for_metric(
        self, name: str, match: Callable[[ReceivedPoint], bool] = lambda p: True
    ) -> list[ReceivedPoint]:
        found = lambda: [p for p in self.points if p.metric == name and match(p)]  # noqa: E731
        assert self.wait_until(lambda: bool(found())), f"no {name} point arrived"
        return found()

    def hold(self) -> None:
        self._call(lambda: self._open.clear() if self._open else None)

    def release(self) -> None:
        self._call(lambda: self._open.set() if self._open else None)

    def _call(self, action: Callable[[], object]) -> None:
        assert self._loop is not None
        done = threading.Event()
        self._loop.call_soon_threadsafe(lambda: (action(), done.set()))
        assert done.wait(10)

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the OTLP receiver did not start")
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        self._sock.close()

    def _run(self) -> None:
        self._loop = loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        self._open = asyncio.Event()
        self._open.set()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._metrics)
        app.router.add_post("/v1/logs", self._logs)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.SockSite(runner, self._sock).start()
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    # -- handlers -----------------------------------------------------------------------

    async def _held(self) -> None:
        assert self._open is not None
        if not self._open.is_set():
            with self._changed:
                self.waiting += 1
                self._changed.notify_all()
            await self._open.wait()

    async def _traces(self, request: web.Request) -> web.Response:
        await self._held()
        raw = await request.read()
        message = ExportTraceServiceRequest.FromString(raw)
        spans = [
            _span(span, _attributes(rs.resource.attributes), ss.scope.name)
            for rs in message.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]
        self._keep(raw, dict(request.headers), spans=spans)
        return _reply(ExportTraceServiceResponse())

    async def _metrics(self, request: web.Request) -> web.Response:
        raw = await request.read()
        message = ExportMetricsServiceRequest.FromString(raw)
        points = [
            ReceivedPoint(metric.name, metric.unit, p.count, p.sum, _attributes(p.attributes))
            for rm in message.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.HasField("histogram")
            for p in metric.histogram.data_points
        ]
        self._keep(raw, dict(request.headers), points=points)
        return _reply(ExportMetricsServiceResponse())

    async def _logs(self, request: web.Request) -> web.Response:
        raw = await request.read()
        message = ExportLogsServiceRequest.FromString(raw)
        events = [
            ReceivedEvent(
                record.event_name, record.trace_id.hex(), record.span_id.hex(), _attributes(record.attributes)
            )
            for rl in message.resource_logs
            for sl in rl.scope_logs
            for record in sl.log_records
            if record.event_name
        ]
        self._keep(raw, dict(request.headers), events=events)
        return _reply(ExportLogsServiceResponse())

    def _keep(
        self,
        raw: bytes,
        headers: dict[str, str],
        spans: list[ReceivedSpan] | None = None,
        points: list[ReceivedPoint] | None = None,
        events: list[ReceivedEvent] | None = None,
    ) -> None:
        with self._changed:
            self.raw.append(raw)
            self.headers.append({k.lower(): v for k, v in headers.items()})
            self.spans.extend(spans or ())
            self.points.extend(points or ())
            self.events.extend(events or ())
            self._changed.notify_all()


def _reply(message: Any) -> web.Response:
    return web.Response(body=message.SerializeToString(), content_type=PROTOBUF)


def _span(span: Any, resource: dict[str, Any], scope: str) -> ReceivedSpan:
    return ReceivedSpan(
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        kind=span.kind,
        status_code=span.status.code,
        status_message=span.status.message,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        attributes=_attributes(span.attributes),
        resource=resource,
        scope=scope,
    )


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None
