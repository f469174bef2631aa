"""The running export: recorded calls in, OTLP/HTTP spans and metrics out, off the request path.

`offer()` is the gateway's `export_trace` hook: it only puts the call on a queue, so the
exporter never slows a call, and it never raises. One thread turns queued calls into
spans and metric points and hands the spans to the SDK's BatchSpanProcessor, which sends
them in batches. At most `queue_size` spans wait (queued here or in the processor); a
call offered beyond that is dropped and counted, and so is every span of a batch the
collector did not take: both show in /healthz (`stats()`).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

from opentelemetry._logs import Logger
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import Histogram
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.environment_variables import OTEL_SERVICE_NAME
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import GEN_AI_TOKEN_TYPE
from opentelemetry.semconv._incubating.metrics.gen_ai_metrics import (
    GEN_AI_CLIENT_OPERATION_DURATION,
    GEN_AI_CLIENT_TOKEN_USAGE,
)
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from console.otel import spans
from console.otel.config import ExportConfig
from console.providers.base import Body
from console.store.trace import Eval, Trace
from console.tracecontext import CallSpan, span_id_of, trace_id_of

log = logging.getLogger("fleetdeck.otel")
SCOPE = "fleetdeck"
# The buckets the GenAI conventions advise for these two histograms.
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Offered = tuple[Trace, CallSpan, Body | None, Body | None]
Judged = tuple[Eval, Trace]  # a verdict, and the call it is about
EVALUATION_EVENT = "gen_ai.evaluation.result"


class OtlpExport:
    def __init__(self, config: ExportConfig, servers: Mapping[str, spans.Server]) -> None:
        self.config = config
        self._servers = dict(servers)
        self._resource = _resource()
        self._scope = InstrumentationScope(SCOPE, _version())
        self._lock = threading.Lock()
        self._waiting = 0  # offered and not yet handed to the exporter
        self.counts = {"exported": 0, "dropped_queue_full": 0, "dropped_export_failed": 0, "failed": 0}
        self._exporter = _Counted(
            OTLPSpanExporter(config.traces_endpoint, headers=config.headers, timeout=config.timeout_s), self
        )
        self._processor = BatchSpanProcessor(
            self._exporter,
            max_queue_size=config.queue_size,
            max_export_batch_size=min(512, config.queue_size),
        )
        self._meters, self._tokens, self._duration = self._metrics()
        self._loggers, self._events = self._event_logger()
        self._queue: queue.SimpleQueue[Offered | Judged | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="fleetdeck-otlp", daemon=True)
        self._worker.start()

    # -- the gateway's side ---------------------------------------------------------------

    def offer(self, trace: Trace, span: CallSpan | None, request: Body | None, response: Body | None) -> None:
        """A finished call: queued for export, or dropped (and counted) when the queue is full."""
        if span is None or not span.sampled or not spans.exported(trace):
            return
        with self._lock:
            if self._waiting >= self.config.queue_size:
                self.counts["dropped_queue_full"] += 1
                return
            self._waiting += 1
        self._queue.put((trace, span, request, response))

    def offer_verdict(self, verdict: Eval, judged: Trace) -> None:
        """The judge's verdict on a call: a `gen_ai.evaluation.result` event under the call's span
        (when a logs endpoint is configured)."""
        if self._events is not None:
            self._queue.put((verdict, judged))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts, waiting = dict(self.counts), self._waiting
        dropped = counts["dropped_queue_full"] + counts["dropped_export_failed"]
        return {"endpoint": self.config.shown_endpoint, "queued": waiting, "dropped": dropped, **counts}

    def shutdown(self, wait_s: float = 10.0) -> None:
        """Export what is queued, for at most `wait_s` (a collector that is down must not hold
        the process up); what is left then is abandoned and said so in the log."""
        self._queue.put(None)
        self._worker.join(wait_s)
        closing = threading.Thread(target=self._close, name="fleetdeck-otlp-close", daemon=True)
        closing.start()
        closing.join(wait_s)
        if closing.is_alive():
            log.warning("OTLP export: %d spans not sent at shutdown", self.stats()["queued"])

    def _close(self) -> None:
        self._processor.shutdown()  # type: ignore[no-untyped-call]
        if self._meters is not None:
            self._meters.shutdown()
        if self._loggers is not None:
            self._loggers.shutdown()

    # -- the worker's side ----------------------------------------------------------------

    def _work(self) -> None:
        while (offered := self._queue.get()) is not None:
            if len(offered) == 2:
                self._evaluation(*offered)
                continue
            try:
                self._export(*offered)
            except Exception:  # a trace the SDK refuses must not stop the export of the others
                log.exception("could not export the span of %s", offered[0].request_id)
                self._handed(1, failed=True)

    def _evaluation(self, verdict: Eval, judged: Trace) -> None:
        assert self._events is not None
        parent = SpanContext(
            int(trace_id_of(judged.trace_id or judged.request_id), 16),
            int(span_id_of(judged.request_id), 16),
            False,
            TraceFlags(TraceFlags.SAMPLED),
        )
        try:
            self._events.emit(
                timestamp=_nanos(verdict.ts),
                context=set_span_in_context(NonRecordingSpan(parent)),
                event_name=EVALUATION_EVENT,
                attributes=spans.evaluation_attributes(verdict, self.config.capture_content),
            )
        except Exception:
            log.exception("could not export the verdict on %s", judged.request_id)

    def _export(self, trace: Trace, span: CallSpan, request: Body | None, response: Body | None) -> None:
        server = self._servers.get(spans.called_provider(trace) or "")
        self._record_metrics(trace, server)
        attributes = spans.span_attributes(trace, server, request, response, self.config.capture_content)
        self._processor.on_end(self._span(trace, span, attributes))

    def _span(self, trace: Trace, span: CallSpan, attributes: spans.Attributes) -> ReadableSpan:
        flags = TraceFlags(TraceFlags.SAMPLED)
        trace_id = int(span.trace_id, 16)
        parent = None
        if span.parent_span_id is not None:
            parent = SpanContext(trace_id, int(span.parent_span_id, 16), span.remote_parent, flags)
        error = spans.error_type(trace)
        return ReadableSpan(
            name=spans.span_name(trace),
            context=SpanContext(trace_id, int(span.span_id, 16), False, flags),
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            kind=SpanKind.CLIENT,
            status=Status(StatusCode.ERROR, error) if error else Status(StatusCode.UNSET),
            start_time=_nanos(trace.ts_start),
            end_time=_nanos(trace.ts_end or trace.ts_start),
            instrumentation_scope=self._scope,
        )

    def _record_metrics(self, trace: Trace, server: spans.Server | None) -> None:
        if self._tokens is None or self._duration is None:
            return
        common = spans.common(trace, server)
        for count, kind in spans.token_points(trace):
            self._tokens.record(count, {**common, GEN_AI_TOKEN_TYPE: kind})
        if trace.latency_ms is not None:
            self._duration.record(trace.latency_ms / 1000, common)

    def _metrics(self) -> tuple[MeterProvider | None, Histogram | None, Histogram | None]:
        endpoint = self.config.metrics_endpoint
        if endpoint is None:
            return None, None, None
        interval = self.config.metrics_interval_s
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint, headers=self.config.headers, timeout=self.config.timeout_s),
            export_interval_millis=None if interval is None else interval * 1000,
        )
        meters = MeterProvider(metric_readers=[reader], resource=self._resource)
        meter = meters.get_meter(SCOPE, _version())
        tokens = meter.create_histogram(
            GEN_AI_CLIENT_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        duration = meter.create_histogram(
            GEN_AI_CLIENT_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        return meters, tokens, duration

    def _event_logger(self) -> tuple[LoggerProvider | None, Logger | None]:
        endpoint = self.config.logs_endpoint
        if endpoint is None:
            return None, None
        loggers = LoggerProvider(resource=self._resource)
        exporter = OTLPLogExporter(endpoint, headers=self.config.headers, timeout=self.config.timeout_s)
        loggers.add_log_record_processor(BatchLogRecordProcessor(exporter))
        return loggers, loggers.get_logger(SCOPE, _version())

    def _handed(self, count: int, *, exported: bool = False, failed: bool = False) -> None:
        with self._lock:
            self._waiting -= count
            if exported:
                self.counts["exported"] += count
            elif failed:
                self.counts["failed"] += count
            else:
                self.counts["dropped_export_failed"] += count


class _Counted(SpanExporter):
    """The OTLP exporter, with every span it sent or could not send counted."""

    def __init__(self, inner: OTLPSpanExporter, export: OtlpExport) -> None:
        self._inner, self._export = inner, export

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = SpanExportResult.FAILURE
        try:
            result = self._inner.export(spans)
        finally:
            self._export._handed(len(spans), exported=result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _resource() -> Resource:
    """service.name from OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES), else fleetdeck."""
    attributes: dict[str, str] = {SERVICE_VERSION: _version()}
    if not os.environ.get(OTEL_SERVICE_NAME) and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes[SERVICE_NAME] = "fleetdeck"
    return Resource.create(attributes)


def _version() -> str:
    try:
        return metadata.version("fleetdeck")
    except metadata.PackageNotFoundError:
        return "0"


def _nanos(ts: datetime) -> int:
    """A naive-UTC timestamp as nanoseconds since the epoch."""
    moment = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000
