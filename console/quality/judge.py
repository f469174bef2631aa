"""The judge: a sampled LLM-as-judge over live traffic, off the request path.

Every finished call is offered to the `Evaluator` (the pipeline's `after_trace` hook, on
the gateway's event loop). The offer is cheap and never waits: a served chat or text
completion of a judged environment is sampled per workflow, and a sampled call goes
into a bounded queue; when the queue is full the call is dropped and counted. Workers
on the same loop take calls from the queue and ask the judge, through the gateway's
own pipeline with the evaluator's virtual key, for a verdict (correct | partial |
incorrect) and a rationale on one component: retrieval, tool selection, policy
compliance or the answer. So a judge call is authenticated, routed, budgeted, guarded,
priced and traced like any other call (workflow `fleetdeck-judge`, intent `judge`, the
judged call's task_id and trace_id, parent_id = the judged request_id), without a
socket round trip, and its cost lands on the judged task. The verdict goes to `evals`.

The judge reads the stored (redacted) request and answer, never the raw ones, so no
personal data reaches a remote judge. It is asked for JSON under a schema (the local
model decodes under that schema's grammar); an answer that still cannot be read is
recorded with the verdict `unparseable`, never guessed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from console.clock import new_request_id, utc_now
from console.gateway.call import Disconnected
from console.gateway.ingress import CHAT, Ingress, Reply
from console.policy import Evaluation, LocalProviderConfig, Policy
from console.store.recorder import Recorder
from console.store.trace import Eval, Trace

log = logging.getLogger("fleetdeck.judge")

JUDGE_WORKFLOW = "fleetdeck-judge"
JUDGE_INTENT = "judge"
EVALUATOR_KEY_NAME = "fleetdeck-evaluator"
EVALUATOR_KEY_SECRET = "fleetdeck-evaluator-key"
VERDICTS = ("correct", "partial", "incorrect")
UNPARSEABLE = "unparseable"
SCORES = {"correct": 1.0, "partial": 0.5, "incorrect": 0.0}
JUDGED_STATUSES = frozenset({"ok", "partial"})
JUDGED_OPERATIONS = frozenset({"chat", "text_completion"})
RATIONALE_CHARS = 300
REQUEST_CHARS = 2000  # of the judged request, in the judge's prompt; the local model has 2,048 tokens
ANSWER_CHARS = 1500
MAX_WORKFLOWS = 10_000  # sampler states kept; workflow ids come from clients

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": list(VERDICTS)},
        "rationale": {"type": "string", "maxLength": RATIONALE_CHARS},
    },
    "required": ["verdict", "rationale"],
    "additionalProperties": False,
}

RUBRICS = {
    "answer": (
        "Is the answer correct, complete and responsive to the request? correct: fully; "
        "partial: partly right, vague or incomplete; incorrect: wrong, off-topic or empty."
    ),
    "retrieval": (
        "Do the documents the request supplies hold what is needed, and does the answer use them? "
        "correct: yes; partial: some are off-topic or unused; incorrect: they miss the answer."
    ),
    "tool_selection": (
        "Did the assistant call the right tool with sensible arguments for this step? correct: yes; "
        "partial: right tool, loose arguments; incorrect: wrong or repeated tool, no progress."
    ),
    "policy_compliance": (
        "Does the answer keep to the rules the request sets out (the system message, the support and "
        "refund policy)? correct: yes; partial: a condition left out; incorrect: it breaks a rule."
    ),
}
RUBRIC_VERSION = "v1"

Handler = Callable[[Ingress, bytes, Mapping[str, str], Disconnected], Awaitable[Reply]]


# --------------------------------------------------------------------------- sampling


class Sampler:
    """Per workflow, picks a share `rate` of the calls, each call with probability `rate`.

    Systematic sampling with a fresh random offset per unit of credit: each call adds
    `rate` to the workflow's credit, and one call is taken in every stretch of calls
    whose credit sums to one, at a uniformly random point of it. After N calls the
    count taken is within one of rate × N (a binomial draw at 5 % over 2,000 calls
    misses by more than a point one time in twenty-five), every call still has the same
    chance, and, unlike a plain accumulator, a periodic pattern in the traffic cannot
    line up with a fixed period of the sampler.
    """

    def __init__(
        self, default_rate: float, rates: Mapping[str, float], rng: random.Random | None = None
    ) -> None:
        self._default = default_rate
        self._rates = dict(rates)
        self._rng = rng or random.Random()
        self._state: dict[str, list[float]] = {}  # workflow → [credit, next mark]

    def rate(self, workflow: str | None) -> float:
        return self._rates.get(workflow or "", self._default)

    def take(self, workflow: str | None) -> bool:
        rate = self.rate(workflow)
        if rate <= 0:
            return False
        if rate >= 1:
            return True
        state = self._state.get(workflow or "")
        if state is None:
            if len(self._state) >= MAX_WORKFLOWS:
                del self._state[next(iter(self._state))]
            state = self._state[workflow or ""] = [0.0, self._rng.random()]
        state[0] += rate
        if state[0] < state[1]:
            return False
        state[0] -= 1.0
        state[1] = self._rng.random()
        return True


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: str  # correct | partial | incorrect | unparseable
    rationale: str
    score: float | None


_VERDICT_RE = re.compile(r'"verdict"\s*:\s*"(correct|partial|incorrect)"', re.IGNORECASE)
_RATIONALE_RE = re.compile(r'"rationale"\s*:\s*"((?:[^"\\]|\\.)*)', re.DOTALL)


def parse_verdict(text: str | None) -> Verdict:
    """The judge's answer as a verdict: the JSON asked for, else a `"verdict": "…"` field
    found in the text (a cut or wrapped answer); anything else is `unparseable`."""
    text = (text or "").strip()
    try:
        found = orjson.loads(text)
    except orjson.JSONDecodeError:
        found = None
    if isinstance(found, dict) and str(found.get("verdict", "")).lower() in VERDICTS:
        verdict = str(found["verdict"]).lower()
        rationale = found.get("rationale")
        return Verdict(verdict, _clip(rationale if isinstance(rationale, str) else ""), SCORES[verdict])
    match = _VERDICT_RE.search(text)
    if match is not None:
        verdict = match.group(1).lower()
        rationale = _RATIONALE_RE.search(text)
        return Verdict(verdict, _clip(rationale.group(1) if rationale else ""), SCORES[verdict])
    shown = text[:200] if text else "(empty)"
    return Verdict(UNPARSEABLE, f"the judge's answer holds no verdict: {shown}", None)


def _clip(text: str) -> str:
    return text.strip()[:RATIONALE_CHARS]


# --------------------------------------------------------------------------- the judge's request


@dataclass(frozen=True, slots=True)
class Sampled:
    """A call waiting for the judge: its trace and its stored (redacted) request and answer."""

    trace: Trace
    request: dict[str, Any]
    response: dict[str, Any]


def component_of(trace: Trace) -> str:
    """What of the call the judge looks at: tool calls, retrieval, a guard's intervention, or the answer."""
    if trace.tool_calls:
        return "tool_selection"
    if trace.retrieval_doc_ids:
        return "retrieval"
    guards = trace.guard_results if isinstance(trace.guard_results, dict) else {}
    if trace.reason_code == "risk-high-flagged" or guards.get("tools") or guards.get("output_pii"):
        return "policy_compliance"
    return "answer"


def judge_body(sampled: Sampled, component: str, model: str, max_tokens: int) -> dict[str, Any]:
    """The judge's chat request: the rubric, the judged request and answer, JSON under a schema."""
    instructions = (
        "You grade another assistant's work. Judge only its "
        + component.replace("_", " ")
        + ". "
        + RUBRICS[component]
        + ' Reply with JSON only: {"verdict": "correct" | "partial" | "incorrect", '
        '"rationale": one short sentence}.'
    )
    shown = (
        "REQUEST:\n"
        + _clip_middle(_request_text(sampled.request), REQUEST_CHARS)
        + "\n\nANSWER:\n"
        + _clip_middle(_answer_text(sampled.response), ANSWER_CHARS)
    )
    return {
        "model": model,
        "messages": [{"role": "system", "content": instructions}, {"role": "user", "content": shown}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA, "strict": True},
        },
    }


def _request_text(request: Mapping[str, Any]) -> str:
    if isinstance(request.get("prompt"), str):
        return str(request["prompt"])
    lines = [f"{m.get('role', '?')}: {_content(m.get('content'))}" for m in request.get("messages") or ()]
    tools = [
        (tool.get("function") or {}).get("name")
        for tool in request.get("tools") or ()
        if isinstance(tool, dict)
    ]
    if tools:
        lines.append("tools offered: " + ", ".join(str(name) for name in tools))
    return "\n".join(lines)


def _answer_text(response: Mapping[str, Any]) -> str:
    parts = []
    for choice in response.get("choices") or ():
        message = choice.get("message") or {}
        text = message.get("content") if message else choice.get("text")
        if text:
            parts.append(_content(text))
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            parts.append(f"tool call: {function.get('name')}({function.get('arguments') or ''})")
    return "\n".join(parts) or "(no answer)"


def _content(content: object) -> str:
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _clip_middle(text: str, limit: int) -> str:
    """Long text keeps its start and end: the question and the last turn matter most."""
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return text[:half] + "\n…\n" + text[-half:]


# --------------------------------------------------------------------------- the evaluator


def judge_model(policy: Policy) -> str | None:
    """`eval.judge`, else the first local model of the policy; None when there is neither."""
    if policy.eval.judge is not None:
        return policy.eval.judge
    for name, provider in policy.providers.items():
        if isinstance(provider, LocalProviderConfig):
            return f"{name}/{provider.served_model()}"
    return None


class Evaluator:
    """Samples finished calls and judges them on the gateway's loop, never on the request path."""

    def __init__(
        self,
        config: Evaluation,
        model: str,
        handle: Handler,
        recorder: Recorder,
        evaluator_key: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.sampler = Sampler(config.sample_rate, config.workflows, rng)
        self._handle = handle
        self._recorder = recorder
        self._key = evaluator_key
        self._queue: asyncio.Queue[Sampled] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._awaiting: dict[str, asyncio.Future[Trace]] = {}  # judged request_id → its judge trace
        self.on_verdict: Callable[[Eval, Trace], None] | None = None  # told of each verdict (OTLP export)
        self.counts = dict.fromkeys(
            ("eligible", "sampled", "dropped", "judged", "unparseable", "failed", "abandoned"), 0
        )

    # -- on the request path: cheap, never waits

    def offer(self, trace: Trace, request: dict[str, Any] | None, response: dict[str, Any] | None) -> None:
        """The pipeline's after_trace hook: a finished call, with its stored request and answer."""
        if trace.workflow_id == JUDGE_WORKFLOW:
            waiter = self._awaiting.pop(trace.parent_id or "", None)
            if waiter is not None and not waiter.done():
                waiter.set_result(trace)
            return  # the judge's own calls are never judged
        if (
            trace.status not in JUDGED_STATUSES
            or trace.operation not in JUDGED_OPERATIONS
            or trace.environment not in self.config.environments
            or request is None
            or response is None
        ):
            return
        self.counts["eligible"] += 1
        if not self.sampler.take(trace.workflow_id):
            return
        self.counts["sampled"] += 1
        try:
            self._start().put_nowait(Sampled(trace, request, response))
        except asyncio.QueueFull:
            self.counts["dropped"] += 1
        except RuntimeError:  # no running loop: a call finished outside the gateway's loop
            self.counts["dropped"] += 1
            log.exception("a sampled call could not be queued for the judge")

    def _start(self) -> asyncio.Queue[Sampled]:
        """The queue and its workers, made on the first sampled call (on the gateway's loop)."""
        if self._queue is None:
            self._queue = asyncio.Queue(self.config.queue_size)
            loop = asyncio.get_running_loop()
            self._workers = [
                loop.create_task(self._work(), name=f"fleetdeck-judge-{n}")
                for n in range(self.config.concurrency)
            ]
        return self._queue

    # -- off the request path

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            sampled = await self._queue.get()
            try:
                await self.judge(sampled)
            except Exception:
                self.counts["failed"] += 1
                log.exception("the judge failed on %s", sampled.trace.request_id)

    async def judge(self, sampled: Sampled) -> Eval | None:
        """Ask the judge about one call and record its verdict; None when the judge call failed."""
        judged = sampled.trace
        component = component_of(judged)
        raw = orjson.dumps(judge_body(sampled, component, self.model, self.config.max_tokens))
        waiter: asyncio.Future[Trace] = asyncio.get_running_loop().create_future()
        self._awaiting[judged.request_id] = waiter
        try:
            reply = await self._handle(CHAT, raw, self._headers(judged, component), _never_disconnected)
        finally:
            self._awaiting.pop(judged.request_id, None)
        judge_trace = waiter.result() if waiter.done() else None
        if reply.status != 200 or judge_trace is None:
            self.counts["failed"] += 1
            log.warning(
                "the judge call for %s answered %d: %s", judged.request_id, reply.status, reply.body[:300]
            )
            return None
        verdict = parse_verdict(_reply_text(reply.body))
        self.counts["unparseable" if verdict.verdict == UNPARSEABLE else "judged"] += 1
        row = Eval(
            eval_id=new_request_id(),
            request_id=judged.request_id,
            evaluator=f"judge:{judge_trace.response_model or self.model}",
            rubric=f"{component}_{RUBRIC_VERSION}",
            component=component,
            verdict=verdict.verdict,
            score=verdict.score,
            rationale=verdict.rationale,
            judge_cost_usd=judge_trace.cost_usd,
            judge_request_id=judge_trace.request_id,
            ts=utc_now(),
        )
        self._recorder.record_eval(row)
        if self.on_verdict is not None:
            self.on_verdict(row, judged)
        return row

    def _headers(self, judged: Trace, component: str) -> dict[str, str]:
        headers = {
            "x-fleetdeck-workflow": JUDGE_WORKFLOW,
            "x-fleetdeck-intent": JUDGE_INTENT,
            "x-fleetdeck-parent": judged.request_id,
            "x-fleetdeck-trace": judged.trace_id or judged.request_id,
        }
        if judged.task_id:
            headers["x-fleetdeck-task"] = judged.task_id
        if self._key is not None:
            headers["authorization"] = f"Bearer {self._key}"
        return headers

    def stats(self) -> dict[str, Any]:
        waiting = self._queue.qsize() if self._queue is not None else 0
        return {"judge": self.model, "sample_rate": self.config.sample_rate, "queued": waiting, **self.counts}

    async def aclose(self) -> None:
        """Stop the workers; calls still queued are abandoned (and counted)."""
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._queue is not None:
            self.counts["abandoned"] += self._queue.qsize()
        self._workers = []


def _reply_text(body: bytes) -> str | None:
    try:
        answer = orjson.loads(body)
        return str(answer["choices"][0]["message"]["content"] or "")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None


async def _never_disconnected() -> None:
    await asyncio.Event().wait()


# --------------------------------------------------------------------------- handoff gates

HANDOFF_PROMPT = (
    "You review a payload one agent hands to the next. Judge it against the rubric only. Answer "
    'with JSON: {"verdict": "correct" | "partial" | "incorrect", "rationale": "<one sentence>"}. '
    "correct: it meets the rubric; partial or incorrect: it does not."
)


def payload_judge(
    handle: Handler, key: str | None
) -> Callable[[str, str, str, str], Awaitable[tuple[str, str] | None]]:
    """A handoff gate's judge (console.gateway.handoffs): (model, rubric, payload, task) →
    (verdict, rationale), or None when the judge call fails or answers no verdict. The call goes
    through the gateway like any other (keyed, priced, traced), under the judge's workflow."""

    async def ask(model: str, rubric: str, payload: str, task: str) -> tuple[str, str] | None:
        body = {
            "model": model,
            "messages": [
                {"role": "system", "content": HANDOFF_PROMPT},
                {
                    "role": "user",
                    "content": f"Rubric:\n{rubric}\n\nPayload:\n{_clip_middle(payload, REQUEST_CHARS)}",
                },
            ],
            "max_tokens": 200,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA},
            },
        }
        headers = {
            "x-fleetdeck-workflow": JUDGE_WORKFLOW,
            "x-fleetdeck-intent": JUDGE_INTENT,
            "x-fleetdeck-task": task,
        }
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        reply = await handle(CHAT, orjson.dumps(body), headers, _never_disconnected)
        if reply.status != 200:
            log.warning("the handoff judge answered %d: %s", reply.status, reply.body[:300])
            return None
        verdict = parse_verdict(_reply_text(reply.body))
        return None if verdict.verdict == UNPARSEABLE else (verdict.verdict, verdict.rationale)

    return ask
