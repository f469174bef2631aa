"""The gateway's HTTP face: a Starlette app on uvicorn, headless or on its own thread.

Each wire protocol is an ingress adapter (console.gateway.ingress) mounted here; its
model calls are answered in front of the app, as plain ASGI (console.gateway.edge). The
request path touches no database: the call hands its trace to the recorder. The admin
API (`/_admin/…`) answers only loopback clients holding the token from the 0600 file in
the data dir; its DuckDB work runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import ipaddress
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import orjson
import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from console.errors import DomainError
from console.gateway.edge import ModelCall, ModelCalls
from console.gateway.errors_http import api_error_from
from console.gateway.handoffs import Handoff
from console.gateway.ingress import ADAPTERS
from console.gateway.ingress import responses as stored_responses
from console.gateway.ingress.messages import MESSAGES
from console.gateway.ingress.messages_reply import error_body
from console.gateway.openai_api import MAX_BODY_BYTES, ApiError, parse_body, unrecorded
from console.gateway.pipeline import Gateway
from console.gateway.wire.check import Checked
from console.gateway.wire.fleetdeck import ADMIN_REQUESTS, OutcomeRequest
from console.store.recorder import RecorderUnavailable
from console.store.trace import Outcome

log = logging.getLogger("fleetdeck.gateway")
JSON = "application/json"
MAX_WAIT_S = 60.0  # GET /v1/handoffs/{id}?wait=S, the longest a reader waits for a gate
OUTCOME = Checked(OutcomeRequest)
ADMIN_CHECKS = {action: Checked(model) for action, model in ADMIN_REQUESTS.items()}

AdminHandler = Callable[[Mapping[str, Any]], bytes | dict[str, Any]]


class Mounted(Protocol):
    """An ASGI app served beside the gateway's routes, running while the app runs (the MCP
    gateway, console/mcp/endpoint.py)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...

    def running(self) -> AbstractAsyncContextManager[None]: ...


def build_app(
    gateway: Gateway,
    health: Callable[[], dict[str, Any]],
    admin_token: str,
    admin_handlers: Mapping[str, AdminHandler],
    mcp: Mounted | None = None,
) -> ModelCalls:
    """`admin_handlers` by path under /_admin/: bytes answer as Arrow IPC, dicts as JSON.
    `mcp`, when the policy names MCP servers, is mounted at /mcp and runs with the app."""

    calls = [(ingress.path, ModelCall(gateway, ingress)) for ingress in ADAPTERS]

    async def models(request: Request) -> Response:
        try:
            gateway.authenticate(request.headers)
        except ApiError as error:
            return _error(error, gateway.record_request(operation_of(request), request.headers, error))
        data = [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": name.partition("/")[0].partition(":")[0],
            }
            for name in gateway.router.known_models()
        ]
        traced = gateway.record_request(operation_of(request), request.headers)
        return _json({"object": "list", "data": data}, headers=traced)

    async def healthz(request: Request) -> Response:
        return _json(health())

    async def openapi_document(request: Request) -> Response:
        from console.gateway import openapi  # the document's models (MCP's among them) on first read

        return Response(openapi.document_bytes(), media_type=JSON)

    async def outcomes(request: Request) -> Response:
        try:
            gateway.authenticate(request.headers)
            outcome = _outcome(parse_body(await _read_body(request)))
        except ApiError as error:
            return _error(error, gateway.record_request(operation_of(request), request.headers, error))
        gateway.recorder.record_outcome(outcome)
        traced = gateway.record_request(
            operation_of(request), request.headers, task_id=outcome.task_id, workflow_id=outcome.workflow_id
        )
        body = {"task_id": outcome.task_id, "status": outcome.status, "recorded": True}
        return _json(body, headers=traced)

    async def crashed(request: Request, exc: Exception) -> Response:
        """An error that escaped an endpoint: 500 in the caller's envelope and, under /v1/ (a
        call of the user's apps), the trace the endpoint did not get to record."""
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        error, traced = _internal_error(), {}
        if request.url.path.startswith("/v1/"):
            with contextlib.suppress(RecorderUnavailable):  # then the 500 goes out untraced
                traced = gateway.record_request(operation_of(request), request.headers, error)
        return _error(error, traced, request)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        error = ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=code)
        traced = {}
        if request.url.path.startswith("/v1/"):  # a call of the user's apps, even a wrong one
            traced = gateway.record_request("unknown", request.headers, error)
        return _error(error, traced, request)

    async def admin(request: Request) -> Response:
        if not _loopback(request) or not _token_matches(request, admin_token):
            return _error(ApiError(403, "the admin API answers loopback clients with the admin token"))
        handler = admin_handlers.get(request.path_params["action"])
        if handler is None:
            return _error(ApiError(404, f"no admin action {request.path_params['action']!r}"))
        try:
            body = parse_body(await _read_body(request))
            ADMIN_CHECKS[request.path_params["action"]].check(body)
            answer = await run_in_threadpool(handler, body)
        except ApiError as error:
            return _error(error)
        except DomainError as error:
            return _error(api_error_from(error))
        if isinstance(answer, bytes):
            return Response(answer, media_type="application/vnd.apache.arrow.stream")
        return _json(answer)

    routes = [
        *(Route(path, call, methods=["POST"]) for path, call in calls),  # what ModelCalls leaves
        Route("/v1/responses/{response_id}", stored_response(gateway), methods=["GET", "DELETE"]),
        Route("/v1/responses/{response_id}/input_items", stored_response(gateway), methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/outcomes", outcomes, methods=["POST"]),
        Route("/v1/handoffs", handoffs_endpoint(gateway), methods=["POST"]),
        Route("/v1/handoffs/{handoff_id}", handoffs_endpoint(gateway), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi_document, methods=["GET"]),
        Route("/_admin/{action}", admin, methods=["POST"]),
    ]
    if mcp is not None:
        routes.append(Route("/mcp", mcp))  # the MCP gateway (console/mcp/endpoint.py)
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, RecorderUnavailable: _unrecorded, Exception: crashed},
        lifespan=(lambda app: mcp.running()) if mcp is not None else None,
    )
    return ModelCalls(calls, app, _unrecorded, _crash)


def handoffs_endpoint(gateway: Gateway) -> Callable[[Request], Awaitable[Response]]:
    """Submit a handoff under a contract (POST), or read its state (GET); one trace each.
    A submission that fails its contract is 422 `handoff_refused`, naming the problem (and the
    handoff, recorded as refused); one held by its gate is 202."""

    async def endpoint(request: Request) -> Response:
        operation = operation_of(request)
        try:
            found = await _handoff(gateway, request)
        except ApiError as error:
            return _error(error, gateway.record_request(operation, request.headers, error))
        traced = gateway.record_request(operation, request.headers, task_id=found.task_id)
        if found.state == "refused" and request.method == "POST":
            refused = ApiError(422, found.problem or "refused", code="handoff_refused")
            body = orjson.loads(refused.envelope())
            body["error"]["handoff"] = found.doc()
            return _json(body, 422, headers=traced)
        return _json(found.doc(), 202 if found.state == "held" else 200, headers=traced)

    return endpoint


async def _handoff(gateway: Gateway, request: Request) -> Handoff:
    submitter = gateway.authenticate(request.headers)
    if gateway.handoffs is None:
        raise ApiError(404, "this gateway's policy has no `handoffs:` contracts", code="unknown_contract")
    if request.method == "GET":
        wait_s = _wait_s(request.query_params.get("wait"))
        return await gateway.handoffs.read_decided(request.path_params["handoff_id"], wait_s)
    doc = parse_body(await _read_body(request))
    return await gateway.handoffs.submit(doc, submitter, request.headers.get("x-fleetdeck-task"))


def _wait_s(value: str | None) -> float:
    """`?wait=S`: answer once the gate decided, or after S seconds (at most MAX_WAIT_S)."""
    if value is None:
        return 0.0
    try:
        wait_s = float(value)
    except ValueError:
        wait_s = -1.0
    if not 0 <= wait_s <= MAX_WAIT_S:
        raise ApiError(
            400,
            f"wait: seconds from 0 to {MAX_WAIT_S:g}, not {value!r}",
            param="wait",
            code="invalid_request",
        )
    return wait_s


def stored_response(gateway: Gateway) -> Callable[[Request], Awaitable[Response]]:
    """The Responses API's stored responses: retrieve, delete, list input items; one trace each."""

    async def endpoint(request: Request) -> Response:
        response_id, headers = request.path_params["response_id"], request.headers
        listing, operation = request.url.path.endswith("/input_items"), operation_of(request)
        try:
            if listing:
                body = await stored_responses.input_items(gateway, headers, response_id, request.query_params)
            elif request.method == "DELETE":
                body = await stored_responses.delete(gateway, headers, response_id)
            else:
                body = await stored_responses.retrieve(gateway, headers, response_id)
        except ApiError as error:
            return _error(error, gateway.record_request(operation, headers, error))
        return _json(body, headers=gateway.record_request(operation, headers))

    return endpoint


def operation_of(request: Request) -> str:
    """The trace's operation for a request under /v1/ that calls no model."""
    path, method = request.url.path, request.method
    if path.startswith("/v1/responses/"):
        return "response_input_items" if path.endswith("/input_items") else f"response_{method.lower()}"
    if path.startswith("/v1/handoffs"):
        return "handoff" if method == "POST" else "handoff_get"
    return {"/v1/models": "models", "/v1/outcomes": "outcome"}.get(path, "unknown")


async def _read_body(request: Request) -> bytes:
    """The body, stopping one byte past the limit so a huge body is refused, not buffered."""
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            break
    return b"".join(chunks)


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=JSON)


def _error(
    error: ApiError, headers: Mapping[str, str] | None = None, request: Request | None = None
) -> Response:
    """The error in the envelope of the protocol the path belongs to (Anthropic's under /v1/messages)."""
    merged = {**error.headers, **(headers or {})}
    if request is not None and request.url.path.startswith(MESSAGES.path):
        body = orjson.dumps(error_body(error, merged.get("X-Fleetdeck-Request-Id")))
        return Response(body, status_code=error.status, headers=merged, media_type=JSON)
    return Response(error.envelope(), status_code=error.status, headers=merged, media_type=JSON)


async def _unrecorded(request: Request, exc: Exception) -> Response:
    """A request whose trace, outcome or audit entry the spool cannot take: 503, nothing kept."""
    message = exc.message if isinstance(exc, RecorderUnavailable) else str(exc)
    return _error(unrecorded(message), request=request)


async def _crash(request: Request, exc: Exception) -> Response:
    """An error that escaped a model call (whose trace the call records itself)."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(_internal_error(), request=request)


def _internal_error() -> ApiError:
    return ApiError(500, "internal error in Fleetdeck; see its log", type_="api_error")


def _outcome(body: dict[str, Any]) -> Outcome:
    OUTCOME.check(body)
    value, reporter = body.get("value"), body.get("reporter")
    return Outcome(
        task_id=body["task_id"],
        workflow_id=body.get("workflow_id"),
        status=body["status"],
        value=float(value) if value is not None else None,
        reporter=reporter if isinstance(reporter, str) else None,
    )


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token_matches(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    return bool(given) and hmac.compare_digest(given, token)


def _freeze_heap() -> None:
    """What exists before serving (policy, models, indexes) lives as long as the process: out of
    the collector's full passes, which otherwise walk all of it (about 70 ms here, a pause every
    call in flight waits out)."""
    gc.collect()
    gc.freeze()


class _Uvicorn(uvicorn.Server):
    """uvicorn that stops on SIGINT/SIGTERM without re-raising the signal afterwards.

    uvicorn re-raises a captured signal once it has shut down; for SIGTERM that kills
    the process before the Engine has flushed the recorder and withdrawn its admin file.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


class GatewayServer:
    """uvicorn serving the app, in the caller's thread (`serve`) or on its own (`start`)."""

    def __init__(
        self,
        app: ModelCalls,
        host: str,
        port: int,
        on_started: Callable[[], None],
        on_shutdown: Callable[[], Awaitable[None]],
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",  # the app's: the MCP gateway's supervisors, when there is one
            loop="none",  # ours: see serve()
            http="httptools",
        )
        self._server = _Uvicorn(config)
        self._thread: threading.Thread | None = None
        self._on_started, self._on_shutdown = on_started, on_shutdown
        self.failed: BaseException | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        servers = self._server.servers
        return int(servers[0].sockets[0].getsockname()[1]) if servers else self._server.config.port

    def serve(self) -> None:
        """Serve in this thread until told to stop (or interrupted, when this is the main thread).

        On uvloop with httptools' parser: together they cut the gateway's CPU per request
        by about a quarter against asyncio and h11 (bench/RESULTS.md)."""
        _freeze_heap()
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        serving = asyncio.create_task(self._server.serve())
        while not self._server.started and not serving.done():
            await asyncio.sleep(0.01)
        if self._server.started:
            self._on_started()
        try:
            await serving
        finally:
            await self._on_shutdown()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve_in_thread, name="fleetdeck-gateway", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the gateway could not start: {self.failed or 'is the port in use?'}")
            threading.Event().wait(0.01)

    def _serve_in_thread(self) -> None:
        try:
            self.serve()
        except BaseException as exc:  # uvicorn exits with SystemExit when it cannot bind
            self.failed = exc

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
