"""The response cache: exact and semantic, scoped so that it cannot cross the lines that matter.

A request is keyed twice (DESIGN.md step 3, after the input guards, before the budget):

- `exact_key`: sha256 of the normalised request: route (or model) and its primary model,
  environment, every message, tools, and every parameter that can change the output.
- `scope`: the same, less the last user turn, plus the embedder's name. A semantic lookup
  compares the embedding of the last user turn with entries of the same scope only, so
  two requests that differ in system prompt, tools, temperature or history never meet.
  Single-turn requests only, unless the route sets `cache_multi_turn`.

Never cached: requests with `Cache-Control: no-store` or `X-Fleetdeck-Cache: bypass`,
sampled requests (temperature unset or above 0) unless the route sets `cache_sampled`,
answers with tool calls, a finish other than stop/length or that fail their output schema,
answers to or with personal data, failed or cut streams. `Cache-Control: no-cache` skips
the lookup and keeps the answer.

A semantic match needs cosine ≥ the route's `cache_threshold` and the two texts agreeing on
their anchors: the same numbers and codes, and not the same words in another order
(`10 miles to km` ≠ `10 km to miles`), which embeddings alone do not see.

Entries live in memory (a dict for exact keys, a usearch HNSW index per scope) and in
DuckDB's `cache_entries`, written by this module's own writer thread and loaded at start.
`cache: shadow` looks up and records what would have been served, never serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import itertools
import logging
import queue
import re
import threading
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from console.gateway import minilm
from console.gateway.cache_index import INDEX_LOAD, SavedIndexes, ScopeIndex
from console.gateway.cache_store import Entry, StoredEntries
from console.gateway.embedders import (
    Embedder,
    GgufEmbedder,
    LexicalEmbedder,
    MiniLMEmbedder,
    RouteEmbedder,
    Vector,
)
from console.gateway.executor import Executor
from console.gateway.router import Router
from console.policy import Route
from console.progress import Progress, Step, silent
from console.providers.base import Provider, Usage
from console.store.db import Database
from console.store.trace import Trace

log = logging.getLogger("fleetdeck.cache")

Body = dict[str, Any]
# Request fields that do not change what the model answers; everything else is in the key.
NOT_OUTPUT = frozenset({"model", "messages", "stream", "stream_options", "user", "metadata", "store"})
CACHEABLE_FINISH = frozenset({"stop", "length"})
CANDIDATES = 8  # nearest neighbours checked for one that has not expired
WRITE_INTERVAL_S = 0.1
SWEEP_INTERVAL_S = 60.0
_ANCHOR = re.compile(r"\w*\d\w*")
_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "to",
        "of",
        "in",
        "on",
        "for",
        "and",
        "or",
        "is",
        "are",
        "be",
        "do",
        "does",
        "i",
        "my",
        "me",
        "you",
        "your",
        "it",
        "this",
        "that",
        "can",
        "could",
        "please",
        "how",
        "what",
        "which",
        "with",
        "at",
        "by",
        "from",
    ]
)


@dataclass(slots=True)
class Lookup:
    """One request's look into the cache, kept until its answer is stored."""

    mode: str  # on | shadow
    route: str | None
    ttl_s: int
    exact_key: str
    scope: str | None = None
    text: str | None = None
    vector: Vector | None = None
    embedder: str | None = None
    kind: str = "miss"  # exact | semantic | miss, at the route's threshold
    entry: Entry | None = None  # the best match, hit or not (shadow mode records it)
    similarity: float | None = None
    looked: bool = True  # False: Cache-Control: no-cache, the answer is only stored

    @property
    def serves(self) -> bool:
        return self.mode == "on" and self.kind != "miss" and self.entry is not None


# --------------------------------------------------------------------------- keys


def request_text(content: Any) -> str | None:
    """The text of a message's content: a string, or the text parts of a list; None otherwise."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "\n".join(str(p.get("text") or "") for p in content)
    return None


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def _normalised_messages(messages: list[Any]) -> list[Any]:
    normalised = []
    for message in messages:
        if not isinstance(message, dict):
            normalised.append(message)
            continue
        text = request_text(message.get("content"))
        normalised.append(
            {**message, "content": text.strip() if text is not None else message.get("content")}
        )
    return normalised


def _digest(*parts: Any) -> str:
    return hashlib.sha256(_canonical(parts)).hexdigest()


def is_sampled(body: Body) -> bool:
    """True unless the request asks for temperature 0 (an unset temperature samples, at 1)."""
    temperature = body.get("temperature")
    return not (
        isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature == 0
    )


def _semantic_text(messages: list[Any], multi_turn: bool) -> str | None:
    """The last user turn, when the request may be matched semantically."""
    if not messages or not isinstance(messages[-1], dict) or messages[-1].get("role") != "user":
        return None
    earlier = messages[:-1]
    if not multi_turn and any(
        not isinstance(m, dict) or m.get("role") not in {"system", "developer"} for m in earlier
    ):
        return None
    text = request_text(messages[-1].get("content"))
    return text.strip() if text and text.strip() else None


def anchors_agree(a: str, b: str) -> bool:
    """Numbers and codes must match; the same content words in another order do not."""
    if sorted(_ANCHOR.findall(a.casefold())) != sorted(_ANCHOR.findall(b.casefold())):
        return False
    words_a, words_b = _content_words(a), _content_words(b)
    return not (sorted(words_a) == sorted(words_b) and words_a != words_b)


def _content_words(text: str) -> list[str]:
    words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    return [w for w in words if w not in _STOPWORDS]


# --------------------------------------------------------------------------- the cache


EmbedViaRoute = Callable[[str, str], Awaitable[list[float]]]


class ResponseCache:
    def __init__(
        self,
        db: Database | None,
        models_dir: Path,
        embed_via_route: EmbedViaRoute | None = None,
        index_dir: Path | None = None,
        progress: Progress = silent,
    ) -> None:
        """`progress` hears the stored entries indexed at start, and MiniLM's first-run conversion."""
        self._progress = progress
        self._stored = StoredEntries(db) if db is not None else None
        self._saved = SavedIndexes(index_dir)  # the indexes as of the last stop
        self._models_dir = models_dir
        self._embed_via_route = embed_via_route
        self._entries: dict[str, Entry] = {}
        self._exact: dict[str, str] = {}
        self._scopes: dict[str, ScopeIndex] = {}
        self._embedders: dict[str, Embedder] = {}
        self._lock = threading.Lock()
        self._keys = itertools.count(1)
        self._pending: queue.Queue[Entry | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._expired: list[str] = []
        self._indexed = threading.Event()  # the stored entries' vectors are searchable

    def stats(self) -> dict[str, object]:
        """For /healthz: until `indexed`, semantic lookups of stored entries miss."""
        with self._lock:
            vectors = sum(len(index.entry_ids) for index in self._scopes.values())
        return {"entries": len(self._entries), "vectors": vectors, "indexed": self._indexed.is_set()}

    # -- lifecycle --------------------------------------------------------------------

    def start(self, routes: Iterable[Route] = ()) -> None:
        """Start the writer, which first loads the entries that have not expired and indexes them
        (until then lookups of stored entries miss, and /healthz says `indexed: false`), and warm
        the routes' embedders (MiniLM's first use converts and loads it). Nothing here waits on
        the store, so the gateway listens at once however many entries it holds."""
        self._keys = itertools.count(self._saved.highest_key() + 1)
        names = {
            r.cache_embedder
            for r in routes
            if r.cache_mode != "off" and not r.cache_embedder.startswith("route:")
        }
        threading.Thread(
            target=self._warm, args=(sorted(names),), name="fleetdeck-cache-warm", daemon=True
        ).start()
        self._writer = threading.Thread(target=self._run_writer, name="fleetdeck-cache", daemon=True)
        self._writer.start()

    def _warm(self, names: list[str]) -> None:
        for name in names:
            embedder = self._embedder(name)
            converts = isinstance(embedder, MiniLMEmbedder) and not minilm.converted(self._models_dir)
            if converts:
                self._progress(Step(0, 1, minilm.CONVERSION))
            try:
                asyncio.run(embedder.embed("warm up"))
            except Exception:
                log.exception("embedder %s does not work; its routes get exact hits only", name)
            if converts:
                self._progress(Step(1, 1, minilm.CONVERSION))

    def stop(self) -> None:
        """Stop the writer and save the indexes, so that the next start need not rebuild them."""
        if self._writer is not None:
            self._pending.put(None)
            self._writer.join()
            self._writer = None
            with self._lock:
                try:
                    self._saved.save(self._scopes)
                except OSError:
                    log.exception("cache: the indexes could not be saved; the next start rebuilds them")

    # -- lookup ---------------------------------------------------------------------------

    async def lookup(
        self, route: Route, target: str, body: Body, headers: Mapping[str, str], environment: str | None
    ) -> Lookup | None:
        """What the cache holds for this request; None when the request is not cacheable."""
        mode = route.cache_mode
        if mode == "off" or _refused_by_client(headers) or not isinstance(body.get("messages"), list):
            return None
        if is_sampled(body) and not route.cache_sampled:
            return None
        messages = _normalised_messages(body["messages"])
        params = {k: v for k, v in body.items() if k not in NOT_OUTPUT}
        where = (route.intent, target, environment)
        lookup = Lookup(mode, route.intent, route.cache_ttl_s, _digest("exact", where, messages, params))
        lookup.looked = "no-cache" not in headers.get("cache-control", "").lower()
        text = _semantic_text(messages, route.cache_multi_turn)
        embedder = self._embedder(route.cache_embedder) if text is not None else None
        if text is not None and embedder is not None:
            lookup.scope = _digest("scope", where, messages[:-1], params, embedder.name)
            lookup.text, lookup.embedder = text, embedder.name
        if lookup.looked and self._exact_match(lookup):
            return lookup
        if lookup.scope is not None and embedder is not None:
            await self._semantic_match(lookup, embedder, route.cache_threshold, lookup.looked)
        return lookup

    def _exact_match(self, lookup: Lookup) -> bool:
        entry = self._live(self._exact.get(lookup.exact_key))
        if entry is None:
            return False
        lookup.kind, lookup.entry, lookup.similarity = "exact", entry, 1.0
        return True

    async def _semantic_match(
        self, lookup: Lookup, embedder: Embedder, threshold: float, search: bool
    ) -> None:
        assert lookup.text is not None and lookup.scope is not None
        try:
            lookup.vector = await embedder.embed(lookup.text)
        except Exception:
            log.exception("embedder %s failed; the cache answers exact matches only", embedder.name)
            lookup.scope = None
            return
        if not search:
            return
        with self._lock:
            index = self._scopes.get(lookup.scope)
            nearest = list(index.nearest(lookup.vector, CANDIDATES)) if index is not None else []
        for entry_id, similarity in nearest:
            entry = self._live(entry_id)
            if entry is None or entry.text is None or not anchors_agree(entry.text, lookup.text):
                continue
            lookup.entry, lookup.similarity = entry, round(similarity, 6)
            if similarity >= threshold:
                lookup.kind = "semantic"
            return

    def _live(self, entry_id: str | None) -> Entry | None:
        entry = self._entries.get(entry_id) if entry_id else None
        if entry is None:
            return None
        if entry.expires_at <= time.time():
            self._expired.append(entry.entry_id)
            return None
        return entry

    # -- store ------------------------------------------------------------------------------

    def store(self, lookup: Lookup, response: Body, trace: Trace) -> bool:
        """Keep a fresh answer, unless it is one that must never be cached."""
        if lookup.kind != "miss" or not cacheable_answer(response, trace):
            return False
        entry = Entry(
            entry_id=trace.request_id,
            exact_key=lookup.exact_key,
            scope=lookup.scope if lookup.vector is not None else None,
            route=lookup.route,
            response=copy.deepcopy(response),
            model=trace.response_model,
            cost_usd=trace.cost_usd,
            expires_at=time.time() + lookup.ttl_s,
            text=lookup.text,
            vector=lookup.vector,
            embedder=lookup.embedder,
        )
        self._entries[entry.entry_id] = entry
        self._exact[entry.exact_key] = entry.entry_id
        self._pending.put(entry)
        return True

    # -- embedders --------------------------------------------------------------------------

    def _embedder(self, name: str) -> Embedder:
        with self._lock:  # the warm-up thread and the event loop may ask at once
            embedder = self._embedders.get(name)
            if embedder is None:
                embedder = self._embedders[name] = self._build_embedder(name)
            return embedder

    def _build_embedder(self, name: str) -> Embedder:
        kind, _, rest = name.partition(":")
        if kind == "gguf":
            return GgufEmbedder(Path(rest).expanduser())
        if kind == "route" and self._embed_via_route is not None:
            via = self._embed_via_route
            return RouteEmbedder(rest, lambda text: via(rest, text))
        if name == "minilm":
            try:
                minilm.wheel_zip()
            except minilm.MiniLMUnavailable as exc:
                log.warning("%s; semantic cache falls back to the lexical embedder", exc)
                return LexicalEmbedder()
            return MiniLMEmbedder(self._models_dir)
        return LexicalEmbedder()

    # -- the writer -------------------------------------------------------------------------

    def _run_writer(self) -> None:
        self._index_loaded(self._load_stored())
        swept = time.monotonic()
        while True:
            batch: list[Entry | None] = []
            with contextlib.suppress(queue.Empty):
                batch.append(self._pending.get(timeout=WRITE_INTERVAL_S))
            while not self._pending.empty():
                batch.append(self._pending.get_nowait())
            entries = [e for e in batch if e is not None]
            for entry in entries:
                self._index(entry)
            if self._stored is not None and entries:
                self._stored.write(entries)
            if time.monotonic() - swept > SWEEP_INTERVAL_S or self._expired:
                self._sweep()
                swept = time.monotonic()
            for _ in batch:
                self._pending.task_done()
            if None in batch:
                return

    def _index(self, entry: Entry) -> None:
        if entry.scope is None or entry.vector is None:
            return
        with self._lock:
            index = self._scopes.get(entry.scope)
            if index is None:
                index = self._scopes[entry.scope] = ScopeIndex(len(entry.vector))
            index.add(next(self._keys), entry.entry_id, entry.vector)

    def _load_stored(self) -> list[Entry]:
        """The stored entries, into the lookups; an entry kept since the start wins over a stored one."""
        loaded = self._stored.load() if self._stored is not None else []
        for entry in loaded:
            self._entries.setdefault(entry.entry_id, entry)
            self._exact.setdefault(entry.exact_key, entry.entry_id)
        return loaded

    def _index_loaded(self, loaded: list[Entry]) -> None:
        by_scope: dict[str, list[Entry]] = {}
        for entry in loaded:
            if entry.scope is not None and entry.vector is not None:
                by_scope.setdefault(entry.scope, []).append(entry)
        if by_scope:
            self._progress(Step(0, sum(len(entries) for entries in by_scope.values()), INDEX_LOAD))
        scopes = self._saved.load(by_scope, self._keys, self._progress)
        with self._lock:
            self._scopes.update(scopes)
        self._indexed.set()
        if loaded:
            log.info("cache: %d entries loaded, %d scopes indexed", len(loaded), len(by_scope))

    def _sweep(self) -> None:
        now = time.time()
        gone = [e for e in list(self._entries.values()) if e.expires_at <= now]
        self._expired.clear()
        for entry in gone:
            self._entries.pop(entry.entry_id, None)
            if self._exact.get(entry.exact_key) == entry.entry_id:
                del self._exact[entry.exact_key]
            with self._lock:
                index = self._scopes.get(entry.scope or "")
                if index is not None:
                    index.remove(entry.entry_id)
        if self._stored is not None and gone:
            with contextlib.suppress(Exception):
                self._stored.delete_expired(now)


def embed_via(router: Router, executor: Executor) -> EmbedViaRoute:
    """Embeddings from a route of the policy, with its fallbacks and deadline (`route:NAME`)."""

    async def embed(route: str, text: str) -> list[float]:
        decision = router.decide(f"route:{route}", None)

        async def call(provider: Provider, model: str, seconds_left: float) -> Body:
            result: Body = await provider.embeddings(model, {"model": model, "input": text})
            return result

        served = await executor.run(decision.plan, [], call)
        return [float(x) for x in served.value["data"][0]["embedding"]]

    return embed


def _refused_by_client(headers: Mapping[str, str]) -> bool:
    return (
        "no-store" in headers.get("cache-control", "").lower()
        or headers.get("x-fleetdeck-cache", "").strip().lower() == "bypass"
    )


def cacheable_answer(response: Body, trace: Trace) -> bool:
    """No tool calls, a clean finish, an answer that matches its schema (when it has one), and
    no personal data on either side."""
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    for choice in choices:
        message = choice.get("message") or {}
        if message.get("tool_calls") or message.get("function_call"):
            return False
        if choice.get("finish_reason") not in CACHEABLE_FINISH:
            return False
    guard = trace.guard_results if isinstance(trace.guard_results, dict) else {}
    return not trace.pii_redactions and not guard.get("output_pii") and trace.schema_valid is not False


# --------------------------------------------------------------------------- replay


def note_lookup(trace: Trace, lookup: Lookup) -> None:
    """What the trace says about a lookup: a hit, or in shadow mode, what would have been served."""
    if lookup.mode == "shadow":
        trace.cache_shadow = lookup.kind
        trace.cache_similarity = lookup.similarity
        trace.cache_entry = lookup.entry.entry_id if lookup.entry else None
        return
    if not lookup.serves or lookup.entry is None:
        return
    entry = lookup.entry
    usage = entry.response.get("usage") or {}
    trace.status, trace.reason_code, trace.http_status = "cached", "cache-hit", 200
    trace.cache, trace.cache_similarity, trace.cache_entry = lookup.kind, lookup.similarity, entry.entry_id
    trace.cost_usd, trace.cache_saved_usd, trace.price_source = 0.0, entry.cost_usd, "cache"
    trace.response_model = entry.model
    trace.provider = entry.model.partition("/")[0] if entry.model else None
    trace.input_tokens, trace.output_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    choices = entry.response.get("choices") or []
    trace.finish_reasons = [str(c.get("finish_reason")) for c in choices if c.get("finish_reason")]


def replay_body(entry: Entry, request_id: str) -> Body:
    body = copy.deepcopy(entry.response)
    body["id"] = f"chatcmpl-{request_id}"
    body["created"] = int(time.time())
    return body


def replay_stream(body: Body, wants_usage: bool) -> list[Body]:
    """A cached answer as the chunks a streaming client expects."""
    base = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": body["created"],
        "model": body.get("model"),
    }
    events: list[Body] = []
    for choice in body.get("choices") or []:
        index = choice.get("index", 0)
        content = str((choice.get("message") or {}).get("content") or "")
        events.append({**base, "choices": [{"index": index, "delta": {"role": "assistant", "content": ""}}]})
        events += [
            {**base, "choices": [{"index": index, "delta": {"content": piece}}]} for piece in _pieces(content)
        ]
        events.append(
            {**base, "choices": [{"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}]}
        )
    if wants_usage:
        events.append({**base, "choices": [], "usage": body.get("usage")})
    return events


def _pieces(content: str) -> list[str]:
    """Word-sized deltas, as a model would stream them."""
    return re.findall(r"\s*\S+\s*", content) or ([content] if content else [])


def assembled_answer(text: dict[int, list[str]], finish: list[str], model: str | None, usage: Usage) -> Body:
    """A streamed answer as the chat completion the cache keeps."""
    tokens = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    choices = [
        {
            "index": index,
            "message": {"role": "assistant", "content": "".join(parts)},
            "finish_reason": finish[min(position, len(finish) - 1)] if finish else None,
        }
        for position, (index, parts) in enumerate(sorted(text.items()))
    ]
    return {"object": "chat.completion", "model": model, "choices": choices, "usage": tokens}
