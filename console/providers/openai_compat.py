"""Any OpenAI-compatible HTTP API: OpenAI, vLLM, llama.cpp server, Ollama, OpenRouter, ….

One httpx-aiohttp transport per provider (aiohttp's connection pool underneath, much faster
than httpx's own), with pooled keep-alive connections; each call is an `httpx.Request` sent
on it. Not through an `httpx.AsyncClient`: a proxy of many tenants' calls must not keep a
cookie jar across them nor follow redirects, and the client's machinery for both (and its
per-request merging) cost more CPU than the rest of the call; its aiohttp session has no
cookie jar either. The environment's proxy (HTTPS_PROXY, NO_PROXY, …) is honoured as the
client would. The transport's aiohttp session is created on the first request and is bound
to that event loop: use a provider on one loop (the gateway's) and `aclose` it there.

Every failure becomes a `ProviderError` (see `base.ErrorType`); messages carry the
upstream's own error message, with the provider's secrets redacted.

Streams: `chat_stream` is an async generator holding the upstream response open. It
closes it when it finishes, fails, is cancelled or is `aclose()`d — a consumer that
stops early should `aclose()` it (`contextlib.aclosing`) rather than leave that to GC.
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn

import aiohttp
import httpx
import orjson
from httpx_aiohttp.transport import AiohttpTransport

from console.providers.base import UPSTREAM_HEADERS, Body, ErrorType, ProviderError
from console.providers.sse import SSEDecoder
from console.providers.upstream_limits import UpstreamLimits, read_limits

DONE = b"[DONE]"
# How long to wait for the end of the body after `[DONE]`, so the connection can go back to the pool.
_DRAIN_S = 0.1
_MAX_MESSAGE = 500
_TRANSPORT_ERRORS = (httpx.HTTPError, aiohttp.ClientError, OSError)
# What httpx's client sends unless told otherwise; a provider's own headers come after.
_DEFAULT_HEADERS = {
    "accept": "*/*",
    "accept-encoding": "gzip, deflate",
    "connection": "keep-alive",
    "user-agent": f"python-httpx/{httpx.__version__}",
    "content-type": "application/json",
}

_CONTEXT_RE = re.compile(
    r"context[ _]length|maximum context|context window|exceeds? the (?:available )?context"
    r"|prompt is too long|exceed_context_size",
    re.IGNORECASE,
)
_FILTER_RE = re.compile(
    r"content[ _]filter|content_policy_violation|content[ _]management[ _]policy|moderation_blocked",
    re.IGNORECASE,
)
_RATE_RE = re.compile(r"rate[ _]limit", re.IGNORECASE)
_OVERLOAD_RE = re.compile(r"overloaded|server_error|api_error|internal", re.IGNORECASE)
_TOKEN_RE = re.compile(r"(?i)\bbearer\s+[^\s\"',]+|\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}")
_STATUS_TYPES = {
    401: ErrorType.auth,
    403: ErrorType.auth,
    404: ErrorType.not_found,
    408: ErrorType.timeout,
    429: ErrorType.rate_limited,
}


# --- errors -------------------------------------------------------------------------------------------


class Redactor:
    """Removes the provider's secrets (and anything shaped like a bearer token) from a message."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        text = _TOKEN_RE.sub("[redacted]", text)
        return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `Retry-After` (delta-seconds or an HTTP-date)."""
    millis = _finite(headers.get("retry-after-ms"))
    if millis is not None:
        return max(0.0, millis / 1000)
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _finite(value: str | None) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def error_details(payload: Any) -> tuple[str, str]:
    """(message, codes) of an error body: `{"error": {"message", "code", "type"}}`, `{"error": "…"}`, …"""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, str):
        return error, ""
    if not isinstance(error, dict):
        return "", ""
    message = error.get("message") or error.get("detail") or ""
    if not isinstance(message, str):
        message = orjson.dumps(message).decode()
    codes = " ".join(str(error[key]) for key in ("code", "type") if error.get(key) is not None)
    return message, codes


def _body_details(content: bytes) -> tuple[str, str]:
    try:
        return error_details(orjson.loads(content))
    except orjson.JSONDecodeError:
        return content[:_MAX_MESSAGE].decode("utf-8", "replace").strip(), ""


def classify_status(status: int, codes: str, message: str) -> ErrorType:
    if status >= 500:
        return ErrorType.server_error
    known = _STATUS_TYPES.get(status)
    if known is not None:
        return known
    if status < 400:
        return ErrorType.bad_response
    text = f"{codes} {message}"
    if _CONTEXT_RE.search(text):
        return ErrorType.context_length
    if _FILTER_RE.search(text):
        return ErrorType.content_filter
    return ErrorType.bad_request


def classify_codes(codes: str, message: str) -> ErrorType:
    """The type of an error that came without an HTTP status (inside a stream)."""
    text = f"{codes} {message}"
    if _RATE_RE.search(text):
        return ErrorType.rate_limited
    if _CONTEXT_RE.search(text):
        return ErrorType.context_length
    if _FILTER_RE.search(text):
        return ErrorType.content_filter
    if "invalid_request" in codes:
        return ErrorType.bad_request
    if "authentication" in codes or "permission" in codes:
        return ErrorType.auth
    if "not_found" in codes:
        return ErrorType.not_found
    return ErrorType.server_error


def classify_transport(exc: BaseException) -> ErrorType:
    # httpx-aiohttp maps most aiohttp connection errors to httpx.ConnectTimeout: trust the cause instead.
    cause = exc.__cause__ if isinstance(exc, httpx.HTTPError) and exc.__cause__ is not None else exc
    if isinstance(cause, TimeoutError | httpx.TimeoutException):
        return ErrorType.timeout
    if isinstance(cause, aiohttp.ClientResponseError):
        return ErrorType.bad_response  # the upstream did not speak HTTP properly
    return ErrorType.connection


# --- the shared HTTP machinery -----------------------------------------------------------------------


class HttpProvider:
    """Pooled JSON-over-HTTP calls with error mapping; the base of the OpenAI and Anthropic providers."""

    kind = "http"

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        headers: Mapping[str, str],
        secrets: Iterable[str | None],
        models: list[str] | None,
        timeout_s: float,
        max_connections: int,
        keepalive_s: float,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._models = list(models or [])
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._redact = Redactor(secrets)
        self.limits: UpstreamLimits | None = None  # what the upstream last said of its rate limits
        self._headers = {**_DEFAULT_HEADERS, **{name.lower(): value for name, value in headers.items()}}
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        self._extensions = {"timeout": timeout.as_dict()}
        tls = httpx.create_ssl_context(trust_env=True)  # here, not on the loop: it reads the CA files
        self._transport = AiohttpTransport(
            proxy=environment_proxy(self.base_url),
            client=lambda: _session(max_connections, keepalive_s, tls),
        )

    def url(self, path: str) -> httpx.URL:
        return httpx.URL(self.base_url + path)

    def models(self) -> list[str]:
        return list(self._models)

    def describe(self) -> dict[str, Any]:
        url = httpx.URL(self.base_url)
        return {
            "name": self.name,
            "kind": self.kind,
            "base_url": str(url.copy_with(username=None, password=None)),
            "models": self.models(),
            "timeout_s": self._timeout_s,
            "max_connections": self._max_connections,
        }

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _send(self, url: httpx.URL, payload: Body, headers: Mapping[str, str] | None) -> httpx.Response:
        """The upstream's response, its body not read yet (`aclose` it)."""
        request = httpx.Request(
            "POST",
            url,
            headers=self._headers_for(headers),
            content=self._encode(payload),
            extensions=self._extensions,
        )
        return await self._transport.handle_async_request(request)

    def _headers_for(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        """The provider's headers, then the call's (providers.base.UPSTREAM_HEADERS), then this
        request's own; names lower-cased so a later one replaces an earlier one."""
        merged = self._headers
        for more in (UPSTREAM_HEADERS.get(), headers):
            if more:
                merged = {**merged, **{name.lower(): value for name, value in more.items()}}
        return merged

    async def post_json(self, url: httpx.URL, payload: Body, headers: Mapping[str, str] | None = None) -> Any:
        """`headers`: this request's own, beside the provider's (e.g. a client's anthropic-beta)."""
        try:
            response = await self._send(url, payload, headers)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except _TRANSPORT_ERRORS as exc:
            raise self.transport_error(exc) from None  # the cause holds the request headers
        self._learn(response.headers)
        if response.status_code >= 300:
            raise self.status_error(response.status_code, response.headers, response.content)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise self.bad_response(f"HTTP {response.status_code} with a body that is not JSON") from None

    @asynccontextmanager
    async def open_stream(
        self, url: httpx.URL, payload: Body, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """The upstream response of a streaming request, checked for its status; closed on exit."""
        try:
            response = await self._send(url, payload, headers)
        except _TRANSPORT_ERRORS as exc:
            raise self.transport_error(exc) from None  # the cause holds the request headers
        try:
            self._learn(response.headers)
            if response.status_code >= 300:
                await response.aread()
                raise self.status_error(response.status_code, response.headers, response.content)
            if response.headers.get("content-type", "").startswith("application/json"):
                raise self._not_a_stream(await response.aread())
            yield response
        except _TRANSPORT_ERRORS as exc:
            raise self.transport_error(exc) from None
        finally:
            await response.aclose()

    def _learn(self, headers: Mapping[str, str]) -> None:
        found = read_limits(headers)
        if found is not None:
            self.limits = found

    def _not_a_stream(self, content: bytes) -> ProviderError:
        try:
            payload = orjson.loads(content)
        except orjson.JSONDecodeError:
            payload = None
        if isinstance(payload, dict) and payload.get("error"):
            return self.body_error(payload)
        return self.bad_response("JSON instead of a stream of server-sent events")

    def _encode(self, payload: Body) -> bytes:
        try:
            return orjson.dumps(payload)
        except TypeError as exc:
            raise ProviderError(
                ErrorType.bad_request, f"{self.name}: request body is not JSON: {exc}"
            ) from None

    def status_error(self, status: int, headers: Mapping[str, str], content: bytes) -> ProviderError:
        message, codes = _body_details(content)
        error_type = classify_status(status, codes, message)
        text = f"{self.name}: HTTP {status}: {message or 'no error message'}"
        return ProviderError(
            error_type, self._redact(text), status=status, retry_after_s=parse_retry_after(headers)
        )

    def body_error(self, payload: Any) -> ProviderError:
        """An error reported in a body (inside a stream, or a 200 carrying `{"error": …}`)."""
        message, codes = error_details(payload)
        error = payload.get("error") if isinstance(payload, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, int) and 400 <= code < 600:  # OpenRouter puts the HTTP status in `code`
            error_type = classify_status(code, codes, message)
        else:
            error_type = classify_codes(codes, message)
        return ProviderError(error_type, self._redact(f"{self.name}: upstream error: {message or codes}"))

    def transport_error(self, exc: BaseException) -> ProviderError:
        cause = exc.__cause__ if isinstance(exc, httpx.HTTPError) and exc.__cause__ is not None else exc
        detail = str(cause) or type(cause).__name__
        return ProviderError(classify_transport(exc), self._redact(f"{self.name}: {detail}"))

    def bad_response(self, what: str) -> ProviderError:
        return ProviderError(
            ErrorType.bad_response, self._redact(f"{self.name}: the upstream answered {what}")
        )

    def expect(self, payload: Any, key: str, what: str) -> Body:
        """`payload` if it is an object with a list under `key`, else the right ProviderError."""
        if isinstance(payload, dict) and isinstance(payload.get(key), list):
            return payload
        if isinstance(payload, dict) and payload.get("error"):
            raise self.body_error(payload)
        raise self.bad_response(f"JSON that is not {what}")


def _session(max_connections: int, keepalive_s: float, tls: ssl.SSLContext) -> aiohttp.ClientSession:
    """The transport's aiohttp session (made on the first request, on the gateway's loop): a
    pool of keep-alive connections, and no cookie jar (aiohttp's keeps what any answer sets)."""
    connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=keepalive_s, ssl=tls)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def environment_proxy(base_url: str) -> httpx.Proxy | None:
    """The proxy the environment names for `base_url` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, unless
    NO_PROXY covers its host), as httpx's client with `trust_env` would pick it."""
    url = httpx.URL(base_url)
    if urllib.request.proxy_bypass(url.host):
        return None
    proxies = urllib.request.getproxies_environment()
    found = proxies.get(url.scheme) or proxies.get("all")
    return httpx.Proxy(found) if found else None


async def drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what is left of a finished stream (the chunked terminator) so its connection is reused."""
    try:
        async with asyncio.timeout(_DRAIN_S):
            async for _ in chunks:
                pass
    except (TimeoutError, *_TRANSPORT_ERRORS):
        pass


# --- the provider -------------------------------------------------------------------------------------


class OpenAICompatProvider(HttpProvider):
    """An OpenAI-compatible API at `base_url` (the URL that ends in `/v1`)."""

    kind = "openai_compat"

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | None = None,
        models: list[str] | None = None,
        timeout_s: float = 600.0,
        max_connections: int = 100,
        *,
        keepalive_s: float = 4.0,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        headers = dict(extra_headers or {})
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        super().__init__(
            name,
            base_url,
            headers=headers,
            secrets=[api_key],
            models=models,
            timeout_s=timeout_s,
            max_connections=max_connections,
            keepalive_s=keepalive_s,
        )
        self._chat_url = self.url("/chat/completions")
        self._completions_url = self.url("/completions")
        self._embeddings_url = self.url("/embeddings")

    async def chat(self, model: str, body: Body) -> Body:
        payload = {**body, "model": model, "stream": False}
        payload.pop("stream_options", None)  # OpenAI rejects it on a non-streaming request
        return self.expect(await self.post_json(self._chat_url, payload), "choices", "a chat completion")

    async def chat_stream(self, model: str, body: Body) -> AsyncGenerator[Body, None]:
        options = {**(body.get("stream_options") or {}), "include_usage": True}
        payload = {**body, "model": model, "stream": True, "stream_options": options}
        decoder = SSEDecoder()
        async with self.open_stream(self._chat_url, payload) as response:
            chunks = response.aiter_bytes()
            async for raw in chunks:
                for event in decoder.feed(raw):
                    if event.data == DONE:
                        await drain(chunks)
                        return
                    yield self._chunk(event.data)
            for event in decoder.flush():
                if event.data == DONE:
                    return
                yield self._chunk(event.data)
        raise ProviderError(ErrorType.connection, f"{self.name}: the stream ended without [DONE]")

    async def completion(self, model: str, body: Body) -> Body:
        payload = {**body, "model": model, "stream": False}
        payload.pop("stream_options", None)
        return self.expect(await self.post_json(self._completions_url, payload), "choices", "a completion")

    async def embeddings(self, model: str, body: Body) -> Body:
        payload = {**body, "model": model}
        return self.expect(await self.post_json(self._embeddings_url, payload), "data", "an embeddings list")

    def _chunk(self, data: bytes) -> Body:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            chunk = None
        if isinstance(chunk, dict):
            if isinstance(chunk.get("choices"), list):
                return chunk
            if chunk.get("error"):
                raise self.body_error(chunk)
            if "usage" in chunk:
                return chunk
        self._malformed(data)

    def _malformed(self, data: bytes) -> NoReturn:
        preview = data[:80].decode("utf-8", "replace")
        raise self.bad_response(f"a stream data line that is not a chunk: {preview!r}")
