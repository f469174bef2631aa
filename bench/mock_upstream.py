"""A fast OpenAI-compatible mock upstream for the gateway bench: raw asyncio, HTTP/1.1 keep-alive.

The test fake (tests/fakes/openai_upstream.py) records every request and can inject
faults, which is what tests need and what a benchmark must not pay for. This mock does
the least a real upstream does: it parses the request line, headers and body length,
looks at three fields of the JSON body with byte searches and answers from templates.

- `POST /v1/chat/completions`: a chat completion of ~80 tokens with usage; with
  `"stream": true` an SSE stream of 20 content chunks, a finish chunk, a usage chunk
  when `stream_options.include_usage` is set, then `[DONE]`, sent chunked.
- A model whose name holds `judge` answers a judge's verdict, `{"verdict": "correct", …}`.
- The delay comes from the model name: `mock-50ms` answers after 50 ms, `mock-0ms`
  (or any name without `<n>ms`) at once. One process serves every delay.
- `GET /v1/models`, `GET /healthz`: small JSON answers.

Run: `.venv/bin/python bench/mock_upstream.py --port 9100` (prints `listening on PORT`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import signal
import socket
import time

MODEL_RE = re.compile(rb'"model"\s*:\s*"([^"]{1,200})"')
DELAY_RE = re.compile(rb"(\d+)ms")
STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
USAGE_RE = re.compile(rb'"include_usage"\s*:\s*true')

ANSWER = (
    "Thanks for reaching out about your invoice. I checked the account and the charge of "
    "$42.10 on October 3 was a duplicate of the monthly plan renewal; it has been flagged for "
    "a refund, which usually reaches the card within five to seven business days. If you do "
    "not see it by then, reply to this message with the last four digits of the card and "
    "we will escalate it to billing right away."
)
WORDS = ANSWER.split()
# A model named `…judge…` answers as the judge does (bench/judge.py): a verdict in JSON.
JUDGE_ANSWER = '{"verdict": "correct", "rationale": "The reply addresses the duplicate charge."}'
PROMPT_TOKENS = 57
COMPLETION_TOKENS = 80
CREATED = 1_767_225_600
CHUNKS = 20

_ids = itertools.count(1)


def _usage() -> dict[str, object]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _content(model: str) -> str:
    return JUDGE_ANSWER if "judge" in model else " ".join(WORDS)


def _json_template(model: str) -> tuple[bytes, bytes]:
    """(prefix, suffix) around the completion's id number."""
    body = {
        "id": "chatcmpl-bench\x00",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": _content(model), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(),
        "service_tier": "default",
    }
    prefix, suffix = json.dumps(body, separators=(",", ":")).encode().split(b"\\u0000")
    return prefix, suffix


def _sse_events(model: str, usage: bool) -> list[bytes]:
    """Events of one stream, each with `\x00` where the completion id goes."""
    base = {"id": "chatcmpl-bench\x00", "object": "chat.completion.chunk", "created": CREATED, "model": model}
    base["system_fingerprint"] = "fp_bench"
    per_chunk = max(1, len(WORDS) // CHUNKS)
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    for i in range(CHUNKS):
        text = " ".join(WORDS[i * per_chunk : (i + 1) * per_chunk]) + " "
        events.append({**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        events.append({**base, "choices": [], "usage": _usage()})
    encoded = [b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events]
    return [*encoded, b"data: [DONE]\n\n"]


class Templates:
    def __init__(self) -> None:
        self._json: dict[str, tuple[bytes, bytes]] = {}
        self._sse: dict[tuple[str, bool], list[tuple[bytes, bytes]]] = {}

    def json_body(self, model: str, n: bytes) -> bytes:
        found = self._json.get(model)
        if found is None:
            found = self._json[model] = _json_template(model)
        return found[0] + n + found[1]

    def sse_body(self, model: str, usage: bool, n: bytes) -> bytes:
        """The whole chunked body of a stream: one HTTP chunk per SSE event."""
        found = self._sse.get((model, usage))
        if found is None:
            found = self._sse[(model, usage)] = [
                tuple(e.split(b"\\u0000"))
                for e in _sse_events(model, usage)  # type: ignore[misc]
            ]
        out = []
        for parts in found:
            event = n.join(parts)
            out.append(b"%x\r\n%s\r\n" % (len(event), event))
        out.append(b"0\r\n\r\n")
        return b"".join(out)


TEMPLATES = Templates()
JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
NOT_FOUND = b'{"error":{"message":"not found","type":"invalid_request_error","code":"not_found"}}'


class Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            length = 0
            if at >= 0:
                stop = head.find(b"\r\n", at + 17)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            self.answer(head, body)

    def answer(self, head: bytes, body: bytes) -> None:
        line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
        method, _, rest = line.partition(b" ")
        path = rest.partition(b" ")[0]
        if method == b"post":  # the head is lower-cased
            found = MODEL_RE.search(body)
            model = found.group(1).decode() if found else "mock-0ms"
            delay = DELAY_RE.search(found.group(1)) if found else None
            n = b"%d" % next(_ids)
            if path.endswith(b"/chat/completions"):
                if STREAM_RE.search(body):
                    payload = SSE_HEAD + TEMPLATES.sse_body(model, bool(USAGE_RE.search(body)), n)
                else:
                    content = TEMPLATES.json_body(model, n)
                    payload = JSON_HEAD % len(content) + content
            else:
                payload = _plain(404, NOT_FOUND)
            if delay is not None and int(delay.group(1)) > 0:
                self.loop.call_later(int(delay.group(1)) / 1000, self.send, payload)
            else:
                self.send(payload)
        elif path.endswith(b"/models"):
            data = {"object": "list", "data": [{"id": "mock-0ms", "object": "model", "owned_by": "bench"}]}
            self.send(_plain(200, json.dumps(data).encode()))
        elif path.endswith(b"/healthz"):
            self.send(_plain(200, b'{"ok":true}'))
        else:
            self.send(_plain(404, NOT_FOUND))

    def send(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _plain(status: int, body: bytes) -> bytes:
    reason = b"OK" if status == 200 else b"Not Found"
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        % (status, reason, len(body))
        + body
    )


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, host, port, backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    try:
        asyncio.run(serve(args.host, args.port))
    finally:
        print(f"mock upstream ran {time.perf_counter() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
