"""Generate Fleetdeck's shipped sample dataset: eight weeks of seeded, scripted LLM traffic.

    .venv/bin/python sample_traces/generate.py [--seed 7] [--out sample_traces]

Writes traces, payloads, outcomes, evals and audit_log as zstd-compressed Parquet. The Arrow
schemas are read from the DuckDB migrations, so the files always match the store. The
same seed always gives the same tables; nothing depends on the clock or the network
(genai-prices is used with its bundled price snapshot). The scripted scenarios are
documented in sample_traces/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from genai_prices import Usage, calc_price

from console.store import audit

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = ROOT / "console" / "store" / "migrations"
TABLES = ("traces", "payloads", "outcomes", "evals", "audit_log")
DEFAULT_SEED = 7

# The dataset covers [START, END): eight Monday-to-Sunday weeks, naive UTC.
START = datetime(2026, 9, 7)
END = START + timedelta(weeks=8)  # 2026-11-02 00:00 UTC, exclusive
LAST = END - timedelta(milliseconds=1)
EPOCH = datetime(1970, 1, 1)
LOCAL_COST_PER_HOUR = 0.40

# Scripted scenarios (see README.md).
OUTAGE = (datetime(2026, 9, 22, 13, 5), datetime(2026, 9, 22, 16, 35))  # week 3: openai 5xx/timeouts
BREAKER = (OUTAGE[0] + timedelta(seconds=100), OUTAGE[1] + timedelta(seconds=50))
RUNAWAY = (datetime(2026, 10, 1, 10, 20), datetime(2026, 10, 1, 15, 45))  # week 4: agent loop
ROUTE_RESUMED = datetime(2026, 10, 2, 8, 10)
DRIFT_FROM = datetime(2026, 10, 12, 9, 30)  # week 6: invoice_extract v4 pinned
BACKFILL = (datetime(2026, 10, 21, 8, 0), datetime(2026, 10, 21, 16, 40))  # week 7: budget breach
BACKFILL_KEY = "k-invoice-backfill"
BACKFILL_CAP_USD = 10.0
DEV_KEY_REVOKED = datetime(2026, 10, 9, 16, 20)
DOC_PROMPT_V2 = datetime(2026, 9, 15, 10, 5)

JUDGE_WORKFLOW = "fleetdeck-judge"
JUDGE_MODEL = "anthropic/claude-haiku-4-5"
JUDGE_KEY = "k-fleetdeck-evaluator"
VERDICTS = ("correct", "partial", "incorrect")
Quality = tuple[float, float, float]  # chances of correct, partial, incorrect

# Relative traffic per hour of the day (UTC): office tools and customer-facing apps.
OFFICE = (0.05, 0.04, 0.04, 0.04, 0.05, 0.10, 0.25, 0.55, 0.95, 1.0, 1.0, 0.95)
OFFICE += (0.8, 1.0, 1.0, 0.95, 0.85, 0.6, 0.35, 0.22, 0.15, 0.1, 0.08, 0.06)
CUSTOMER = (0.25, 0.2, 0.17, 0.15, 0.15, 0.2, 0.3, 0.45, 0.65, 0.8, 0.9, 0.95)
CUSTOMER += (0.95, 1.0, 1.0, 1.0, 0.95, 0.9, 0.85, 0.75, 0.65, 0.55, 0.45, 0.35)
WEEKDAY = (1.0, 1.06, 1.05, 1.02, 0.92, 0.38, 0.30)  # Monday .. Sunday

TENANTS = {"acme": 30, "globex": 22, "initech": 15, "umbrella": 12, "hooli": 9, "stark": 6, "wayne": 4}
ENVIRONMENTS = {"prod": 0.90, "staging": 0.07, "dev": 0.03}
KEYS = {
    "internal_doc_summaries": ("k-docs-portal-prod", "k-docs-portal-staging"),
    "support_triage": ("k-helpdesk-prod", "k-helpdesk-staging"),
    "invoice_parsing": ("k-invoice-prod", "k-invoice-staging"),
    "refund_agent": ("k-refund-bot-prod", "k-refund-bot-staging"),
}
REVIEWERS = ("ana.ruiz", "ben.okafor", "chloe.martin")


# --------------------------------------------------------------------------- helpers


def lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def tokens(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    return max(low, min(high, round(lognormal(rng, median, sigma))))


def poisson(rng: random.Random, lam: float) -> int:
    if lam > 40:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def ms(value: float) -> timedelta:
    return timedelta(microseconds=round(value * 1000))


def week_of(ts: datetime) -> int:
    return 1 + (ts - START) // timedelta(weeks=1)


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(ts: datetime, rng: random.Random) -> str:
    """A ULID whose time part is `ts` and whose 80 random bits come from the seeded rng."""
    value = ((ts - EPOCH) // timedelta(milliseconds=1)) << 80 | rng.getrandbits(80)
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def hex_id(rng: random.Random, nbytes: int = 16) -> str:
    return f"{rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"


def arrivals(
    rng: random.Random, per_weekday: float, shape: tuple[float, ...], weekend: float
) -> list[datetime]:
    """Task start times: Poisson per hour, shaped by hour of day, day of week and slow growth."""
    times: list[datetime] = []
    total = sum(shape)
    for day in range(56):
        midnight = START + timedelta(days=day)
        weekday = midnight.weekday()
        factor = WEEKDAY[weekday] * (weekend if weekday >= 5 else 1.0) * (1 + 0.015 * day / 7)
        factor *= math.exp(rng.gauss(0.0, 0.08))
        for hour, weight in enumerate(shape):
            for _ in range(poisson(rng, per_weekday * factor * weight / total)):
                times.append(midnight + timedelta(hours=hour, seconds=rng.uniform(0, 3600)))
    return sorted(t for t in times if t < END - timedelta(minutes=30))


# --------------------------------------------------------------------------- models and calls


@dataclass(frozen=True)
class Model:
    name: str  # provider/model
    tier: str
    ttft_ms: float  # median time to first token
    tokens_per_s: float
    price_ref: str | None = None  # genai-prices model id; None: priced by local compute time

    @property
    def provider(self) -> str:
        return self.name.split("/", 1)[0]


MODELS = {
    m.name: m
    for m in (
        Model("local/smollm2-135m", "local", 90.0, 70.0),
        Model("openai/gpt-4o-mini", "small", 420.0, 85.0, "gpt-4o-mini"),
        Model("openai/gpt-4o", "large", 560.0, 55.0, "gpt-4o"),
        Model("anthropic/claude-haiku-4-5", "small", 380.0, 120.0, "claude-haiku-4-5"),
        Model("anthropic/claude-sonnet-4", "large", 850.0, 60.0, "claude-sonnet-4"),
    )
}
CONTEXT_BUDGET = {
    "summarize_internal_docs": 6000,
    "triage_ticket": 8000,
    "draft_support_reply": 8000,
    "extract_invoice": 16000,
    "refund_agent": 128_000,
    "judge": 128_000,
}
SCHEMAS = {
    "extract_invoice": "invoice.v3",
    "triage_ticket": "ticket_label.v2",
    "judge": "verdict.v1",
}  # JSON outputs


def price(model: Model, ts: datetime, usage: tuple[int, int, int], compute_ms: float) -> tuple[float, str]:
    """Cost of one served call: genai-prices for remote models, compute seconds for local ones."""
    if model.price_ref is None:
        return round(compute_ms / 3_600_000 * LOCAL_COST_PER_HOUR, 10), "local-compute"
    input_tokens, output_tokens, cache_read = usage
    calc = calc_price(
        Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read),
        model.price_ref,
        provider_id=model.provider,
        genai_request_timestamp=ts.replace(tzinfo=UTC),
    )
    return float(calc.total_price), "genai-prices"


@dataclass(frozen=True)
class Attempt:
    model: Model
    status: str  # ok | error | skipped (circuit open: not sent)
    error_type: str | None
    http_status: int | None
    latency_ms: float

    def log(self) -> dict[str, Any]:
        return {
            "provider": self.model.provider,
            "model": self.model.name,
            "status": self.status,
            "error_type": self.error_type,
            "latency_ms": round(self.latency_ms, 1),
            "http_status": self.http_status,
        }


@dataclass(frozen=True)
class Served:
    attempts: list[Attempt]
    model: Model | None  # None when every candidate failed
    latency_ms: float
    ttft_ms: float | None
    http_status: int


def upstream_failure(rng: random.Random, model: Model, ts: datetime) -> tuple[str, int | None] | None:
    """The error of one upstream attempt, or None when it succeeds."""
    if model.provider == "openai" and OUTAGE[0] <= ts < OUTAGE[1]:
        return ("server_error", 503) if rng.random() < 0.8 else ("timeout", None)
    draw = rng.random()
    if model.provider == "local":
        return ("server_error", None) if draw < 0.002 else None
    if draw < 0.004:
        return "rate_limited", 429
    if draw < 0.006:
        return "server_error", rng.choice((500, 502))
    if draw < 0.0072:
        return "timeout", None
    if draw < 0.0080:
        return "content_filter", 400  # refused for the prompt itself: no retry, no fallback
    return None


def failure_latency(rng: random.Random, error_type: str) -> float:
    if error_type == "timeout":
        return 10_000 + rng.uniform(0, 40)  # the first-token deadline
    if error_type == "rate_limited":
        return rng.uniform(40, 160)
    return rng.uniform(90, 700)


def success_latency(
    rng: random.Random, model: Model, input_tokens: int, output_tokens: int
) -> tuple[float, float]:
    ttft = lognormal(rng, model.ttft_ms, 0.35)
    if model.provider == "local":
        ttft += input_tokens / 2400 * 1000  # prompt processing on CPU
    if rng.random() < 0.015:
        ttft *= rng.uniform(2.5, 7.0)  # queueing tail
    decode = output_tokens / lognormal(rng, model.tokens_per_s, 0.15) * 1000
    return ttft, ttft + decode


def breaker_open(model: Model, ts: datetime) -> bool:
    return model.provider == "openai" and BREAKER[0] <= ts < BREAKER[1]


def execute(
    rng: random.Random, chain: list[Model], ts: datetime, usage: tuple[int, int], retries: int
) -> Served:
    """Attempts under the route's chain: retry 429/5xx on the same model, fall back on timeouts."""
    log: list[Attempt] = []
    elapsed = rng.uniform(1.5, 6.0)  # gateway overhead: auth, guards, cache lookup, routing
    for model in chain:
        if breaker_open(model, ts) and rng.random() > 0.04:  # 4%: a half-open probe goes through
            log.append(Attempt(model, "skipped", "circuit_open", None, 0.0))
            continue
        for retry in range(retries + 1):
            failure = upstream_failure(rng, model, ts + ms(elapsed))
            if failure is None:
                ttft, total = success_latency(rng, model, *usage)
                http = None if model.provider == "local" else 200
                log.append(Attempt(model, "ok", None, http, total))
                return Served(log, model, elapsed + total, elapsed + ttft, 200)
            took = failure_latency(rng, failure[0])
            log.append(Attempt(model, "error", failure[0], failure[1], took))
            elapsed += took
            if failure[0] == "content_filter":
                return Served(log, None, elapsed, None, 400)
            if failure[0] == "timeout" or retry == retries:
                break
            elapsed += 500 * 2**retry + rng.uniform(0, 250) + (1000 if failure[0] == "rate_limited" else 0)
    last = log[-1]
    http = {"timeout": 504, "rate_limited": 429, "circuit_open": 503}.get(last.error_type or "", 502)
    return Served(log, None, elapsed, None, http)


# --------------------------------------------------------------------------- records


@dataclass
class Task:
    task_id: str
    trace_id: str
    workflow: str
    environment: str
    key_id: str
    tenant: str
    user_role: str
    last_request: str | None = None
    end: datetime = START


@dataclass
class Call:
    intent: str
    prompt: tuple[str, str]
    reason: str
    chain: list[str]
    input_tokens: int
    output_tokens: int
    cache_read: int = 0
    stream: bool = False
    retries: int = 1
    request_model: str | None = None
    finish: str = "stop"
    schema_valid: bool | None = None
    tool_calls: list[dict[str, Any]] | None = None
    retrieval: list[str] | None = None
    pii: int = 0
    injection: float = 0.0
    request_hash: str | None = None


@dataclass(frozen=True)
class AuditEvent:
    ts: datetime
    actor: str
    actor_kind: str  # human | key | system
    action: str
    subject: str | None
    payload: dict[str, Any]


@dataclass
class Sim:
    seed: int
    traces: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    audit: list[AuditEvent] = field(default_factory=list)

    def rng(self, name: str) -> random.Random:
        return random.Random(f"{self.seed}/{name}")

    def event(
        self, ts: datetime, actor: str, actor_kind: str, action: str, subject: str | None, /, **payload: Any
    ) -> None:
        self.audit.append(AuditEvent(ts, actor, actor_kind, action, subject, payload))


def new_task(rng: random.Random, workflow: str, ts: datetime, role: str, tenant: str | None = None) -> Task:
    environment = pick(rng, ENVIRONMENTS)
    prod, staging = KEYS[workflow]
    key = {"prod": prod, "staging": staging}.get(environment, "k-dev-maria")
    if environment == "dev" and ts < DEV_KEY_REVOKED and rng.random() < 0.5:
        key = "k-dev-sam"
    return Task(
        task_id="tsk_" + ulid(ts, rng),
        trace_id=hex_id(rng),
        workflow=workflow,
        environment=environment,
        key_id=key,
        tenant=tenant or pick(rng, TENANTS),
        user_role=role,
    )


def guard_results(c: Call, blocked: bool, served: bool = False) -> str:
    """Input guards for every request; the output schema check only once a model answered."""
    budget = CONTEXT_BUDGET[c.intent]
    results: dict[str, Any] = {
        "pii": {"action": "redact" if c.pii else "pass", "found": c.pii},
        "injection": {"score": c.injection, "action": "block" if blocked else "pass"},
        "context": {
            "tokens": c.input_tokens,
            "budget": budget,
            "action": "reroute" if c.input_tokens > budget else "pass",
        },
    }
    if served and c.schema_valid is not None:
        results["output_schema"] = {"schema": SCHEMAS[c.intent], "valid": c.schema_valid}
    return dumps(results)


def base_row(rng: random.Random, task: Task, ts: datetime, step: int | None, c: Call) -> dict[str, Any]:
    request_id = ulid(ts, rng)
    request_hash = c.request_hash or hashlib.sha256(f"{c.intent}|{request_id}".encode()).hexdigest()
    c.request_hash = request_hash
    return {
        "request_id": request_id,
        "trace_id": task.trace_id,
        "parent_id": task.last_request,
        "ts_start": ts,
        "environment": task.environment,
        "key_id": task.key_id,
        "workflow_id": task.workflow,
        "intent": c.intent,
        "tier": MODELS[c.chain[0]].tier,
        "user_role": task.user_role,
        "tenant": task.tenant,
        "task_id": task.task_id,
        "step": step,
        "prompt_name": c.prompt[0],
        "prompt_version": c.prompt[1],
        "operation": "chat",
        "protocol": "chat_completions",
        "route": c.intent,
        "request_model": c.request_model or f"route:{c.intent}",
        "reason_code": c.reason,
        "context_tokens": c.input_tokens,
        "stream": c.stream,
        "pii_redactions": c.pii,
        "injection_score": c.injection,
        "retrieval_doc_ids": c.retrieval,
        "request_hash": request_hash,
        "guard_results": guard_results(c, blocked=False),
        "response_model": None,
        "provider": None,
        "schema_valid": None,
    }


def record(sim: Sim, task: Task, row: dict[str, Any]) -> dict[str, Any]:
    row["ts_end"] = row["ts_start"] + ms(row["latency_ms"])
    sim.traces.append(row)
    task.last_request, task.end = row["request_id"], row["ts_end"]
    return row


def call(sim: Sim, rng: random.Random, task: Task, ts: datetime, step: int | None, c: Call) -> dict[str, Any]:
    """One request through the gateway: route, attempts, settle, record."""
    row = base_row(rng, task, ts, step, c)
    chain = [MODELS[name] for name in c.chain]
    served = execute(rng, chain, ts, (c.input_tokens, c.output_tokens), c.retries)
    row.update(
        attempts=sum(a.status != "skipped" for a in served.attempts),
        attempt_log=dumps([a.log() for a in served.attempts]),
        latency_ms=round(served.latency_ms, 1),
        http_status=served.http_status,
        cache="miss",
    )
    model = served.model
    if model is None:
        row.update(
            status="error",
            error_type=served.attempts[-1].error_type,
            provider=served.attempts[-1].model.provider,
            input_tokens=0,
            output_tokens=0,
            cost_usd=0.0,
        )
        return record(sim, task, row)
    prefix_cached = model.price_ref is not None and c.input_tokens > c.cache_read  # provider prompt cache
    cache_read = c.cache_read if prefix_cached else 0
    cost, source = price(
        model, ts, (c.input_tokens, c.output_tokens, cache_read), served.attempts[-1].latency_ms
    )
    row.update(
        status="partial" if c.finish == "length" else "ok",
        response_model=model.name,
        provider=model.provider,
        tier=model.tier,
        input_tokens=c.input_tokens,
        output_tokens=c.output_tokens,
        cache_read_tokens=cache_read,
        reasoning_tokens=0,
        cost_usd=cost,
        price_source=source,
        ttft_ms=round(served.ttft_ms or 0.0, 1),
        finish_reasons=[c.finish],
        schema_valid=c.schema_valid,
        tool_calls=dumps(c.tool_calls) if c.tool_calls else None,
        guard_results=guard_results(c, blocked=False, served=True),
    )
    if model is not chain[0]:
        row["reason_code"] = "provider-outage-fallback"
    return record(sim, task, row)


def rejected(
    sim: Sim,
    rng: random.Random,
    task: Task,
    ts: datetime,
    step: int | None,
    c: Call,
    status: str,
    error_type: str,
    http_status: int,
) -> dict[str, Any]:
    """A request refused before any model ran: blocked by a guard or a stopped route, or over budget."""
    row = base_row(rng, task, ts, step, c)
    row.update(
        status=status,
        error_type=error_type,
        http_status=http_status,
        attempts=0,
        attempt_log="[]",
        input_tokens=0,
        output_tokens=0,
        cost_usd=0.0,
        latency_ms=round(rng.uniform(0.8, 4.0) if status == "over_budget" else rng.uniform(3, 18), 1),
        cache="miss" if status == "over_budget" else None,  # the cache is looked up before the budget
    )
    if status == "over_budget":
        row["reason_code"] = "budget-exceeded"
    if status == "blocked":  # refused before (injection) or at (stopped route) routing
        row["reason_code"] = None
    if error_type == "prompt_injection":
        row["guard_results"] = guard_results(c, blocked=True)
    return record(sim, task, row)


def outcome(sim: Sim, task: Task, status: str, value: float | None, delay_s: float, reporter: str) -> None:
    """The task's one outcome, reported `delay_s` after its last call."""
    ts = min(task.end + timedelta(seconds=delay_s), LAST)
    sim.outcomes.append(
        {
            "task_id": task.task_id,
            "workflow_id": task.workflow,
            "status": status,
            "value": value,
            "ts": max(ts, task.end),
            "reporter": reporter,
        }
    )


def truth_of(rng: random.Random, quality: Quality) -> str:
    return rng.choices(VERDICTS, weights=quality)[0]


# --------------------------------------------------------------------------- judge


RATIONALES = {
    ("answer", "correct"): ("All requested fields present and consistent with the source.",),
    ("answer", "partial"): (
        "Mostly right; one field or statement is imprecise.",
        "Answer is vague in one place.",
    ),
    ("answer", "incorrect"): ("Key facts contradict the source.", "Totals do not match the line items."),
    ("retrieval", "correct"): ("Retrieved documents cover the question.",),
    ("retrieval", "partial"): ("One retrieved document is off-topic.",),
    ("retrieval", "incorrect"): ("Retrieved documents do not contain the answer.",),
    ("tool_selection", "correct"): ("Tool choice and arguments fit the step.",),
    ("tool_selection", "partial"): ("Right tool, redundant or loose arguments.",),
    ("tool_selection", "incorrect"): ("Repeats a tool call with the same arguments; no progress.",),
    ("policy_compliance", "correct"): ("Follows the refund and support policy.",),
    ("policy_compliance", "partial"): ("Policy followed, but the customer was not told the conditions.",),
    ("policy_compliance", "incorrect"): ("Violates policy: promises something outside the rules.",),
}


def judge_verdict(rng: random.Random, truth: str) -> tuple[str, float]:
    verdict = truth if rng.random() < 0.9 else rng.choice([v for v in VERDICTS if v != truth])
    low, high = {"correct": (0.85, 1.0), "partial": (0.45, 0.75), "incorrect": (0.0, 0.35)}[verdict]
    return verdict, round(rng.uniform(low, high), 2)


def maybe_judge(
    sim: Sim,
    rng: random.Random,
    task: Task,
    judged: dict[str, Any],
    truth: str,
    component: str,
    rubric: str,
    rate: float,
) -> None:
    """Sample a served prod call for the LLM judge; the judge call is itself a trace of the same task."""
    if judged["environment"] != "prod" or judged["status"] not in ("ok", "partial") or rng.random() >= rate:
        return
    delay = timedelta(seconds=lognormal(rng, 75, 0.7))
    start = max(judged["ts_end"], min(judged["ts_end"] + delay, END - timedelta(minutes=5)))
    judge_task = Task(
        task_id=task.task_id,
        trace_id=hex_id(rng),
        workflow=JUDGE_WORKFLOW,
        environment=task.environment,
        key_id=JUDGE_KEY,
        tenant=task.tenant,
        user_role="evaluator",
        last_request=judged["request_id"],
    )
    c = Call(
        intent="judge",
        prompt=(f"judge_{rubric}", "v1"),
        reason="primary",
        chain=[JUDGE_MODEL, "openai/gpt-4o-mini"],
        input_tokens=judged["input_tokens"] + judged["output_tokens"] + rng.randint(550, 750),
        output_tokens=tokens(rng, 120, 0.3, 40, 400),
        request_model=JUDGE_MODEL,
        schema_valid=True,
    )
    row = call(sim, rng, judge_task, start, None, c)
    if row["status"] != "ok":
        return
    verdict, score = judge_verdict(rng, truth)
    rationale = rng.choice(RATIONALES[component, verdict])
    if judged["schema_valid"] is False:
        schema = SCHEMAS[judged["intent"]]
        verdict, score, rationale = "incorrect", 0.0, f"Output is not valid JSON for schema {schema}."
    sim.evals.append(
        {
            "eval_id": ulid(row["ts_end"], rng),
            "request_id": judged["request_id"],
            "evaluator": f"judge:{JUDGE_MODEL}",
            "rubric": rubric,
            "component": component,
            "verdict": verdict,
            "score": score,
            "rationale": rationale,
            "judge_cost_usd": row["cost_usd"],
            "judge_request_id": row["request_id"],
            "ts": row["ts_end"],
        }
    )


# --------------------------------------------------------------------------- internal_doc_summaries


DOC_SPACES = {"eng-wiki": 40, "runbooks": 25, "hr-policy": 15, "sales-playbook": 12, "finance": 8}
DOC_QUALITY = {"local/smollm2-135m": (0.72, 0.20, 0.08), "openai/gpt-4o-mini": (0.85, 0.11, 0.04)}


def doc_ids(rng: random.Random, weights: dict[str, float], prefix: str | None, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        space = prefix or pick(rng, weights)
        ids.append(f"{space}/{min(999, int(rng.paretovariate(0.9) * 3)):04d}")
    return sorted(set(ids))


def doc_summaries(sim: Sim) -> None:
    rng = sim.rng("internal_doc_summaries")
    recent: list[tuple[str, str]] = []  # (request_hash, response_model) of recent misses, for cache hits
    for ts in arrivals(rng, 380, OFFICE, weekend=0.45):
        task = new_task(rng, "internal_doc_summaries", ts, "employee", tenant="internal")
        row = doc_summary_call(sim, rng, task, ts, 1, recent)
        if row["status"] == "error":
            outcome(sim, task, "failed", None, lognormal(rng, 20, 0.5), "app:docs-portal")
            continue
        if row["status"] == "ok" and row["cache"] == "miss" and rng.random() < 0.06:  # user regenerates
            row = doc_summary_call(
                sim, rng, task, row["ts_end"] + timedelta(seconds=lognormal(rng, 25, 0.6)), 2, []
            )
        status = "abandoned" if rng.random() < (0.5 if row["status"] == "partial" else 0.04) else "resolved"
        if row["status"] == "error":
            status = "failed"
        outcome(sim, task, status, None, lognormal(rng, 40, 0.8), "app:docs-portal")


def doc_summary_call(
    sim: Sim, rng: random.Random, task: Task, ts: datetime, step: int, recent: list[tuple[str, str]]
) -> dict[str, Any]:
    docs = doc_ids(rng, DOC_SPACES, None, rng.randint(1, 4))
    input_tokens = tokens(rng, 2600, 0.65, 300, 30_000)
    long_doc = input_tokens > CONTEXT_BUDGET["summarize_internal_docs"]
    local = not long_doc
    c = Call(
        intent="summarize_internal_docs",
        prompt=("doc_summary", "v2" if ts >= DOC_PROMPT_V2 else "v1"),
        reason="context-budget-exceeded" if long_doc else "primary",
        chain=["openai/gpt-4o-mini"] if long_doc else ["local/smollm2-135m", "openai/gpt-4o-mini"],
        input_tokens=input_tokens,
        output_tokens=512 if local and rng.random() < 0.012 else tokens(rng, 220, 0.45, 30, 900),
        cache_read=1024 if long_doc and rng.random() < 0.3 else 0,
        stream=True,
        retrieval=docs,
        pii=1 if rng.random() < 0.03 else 0,
        injection=round(rng.betavariate(1, 40), 3),
    )
    c.finish = "length" if c.output_tokens == 512 and local else "stop"
    hit = pick(rng, {"exact": 0.08, "semantic": 0.14, "miss": 0.78}) if task.environment != "dev" else "miss"
    if hit != "miss" and recent and step == 1:
        return cached(sim, rng, task, ts, c, hit, recent)
    row = call(sim, rng, task, ts, step, c)
    if step == 1 and row["status"] == "ok":
        recent.append((row["request_hash"], row["response_model"]))
        del recent[:-300]
    if row["response_model"]:
        truth = truth_of(rng, DOC_QUALITY[row["response_model"]])
        component = "retrieval" if rng.random() < 0.4 else "answer"
        maybe_judge(sim, rng, task, row, truth, component, "doc_summary_v1", 0.05)
    return row


def cached(
    sim: Sim, rng: random.Random, task: Task, ts: datetime, c: Call, hit: str, recent: list[tuple[str, str]]
) -> dict[str, Any]:
    """A response served from the cache: exact (same request hash) or semantic (similar prompt)."""
    request_hash, model_name = rng.choice(recent)
    if hit == "exact":
        c.request_hash = request_hash
    row = base_row(rng, task, ts, 1, c)
    model = MODELS[model_name]
    latency = rng.uniform(2, 8) if hit == "exact" else rng.uniform(25, 70)
    row.update(
        status="cached",
        reason_code="cache-hit",
        cache=hit,
        cache_similarity=1.0 if hit == "exact" else round(rng.uniform(0.92, 0.99), 3),
        response_model=model.name,
        provider=model.provider,
        tier=model.tier,
        attempts=0,
        attempt_log="[]",
        input_tokens=c.input_tokens,
        output_tokens=c.output_tokens if c.finish == "stop" else 480,
        cache_read_tokens=0,
        reasoning_tokens=0,
        cost_usd=0.0,
        latency_ms=round(latency, 1),
        ttft_ms=round(latency, 1),
        http_status=200,
        finish_reasons=["stop"],
    )
    return record(sim, task, row)


# --------------------------------------------------------------------------- support_triage


DRAFT_QUALITY = {
    "openai/gpt-4o": (0.86, 0.10, 0.04),
    "openai/gpt-4o-mini": (0.78, 0.15, 0.07),
    "anthropic/claude-sonnet-4": (0.88, 0.09, 0.03),
    "anthropic/claude-haiku-4-5": (0.80, 0.14, 0.06),
}
RESOLVE_CHANCE = {"correct": 0.84, "partial": 0.6, "incorrect": 0.25}


def injection_score(rng: random.Random, attack_rate: float) -> float:
    if rng.random() < attack_rate:
        return round(rng.uniform(0.91, 0.995), 3)
    return round(rng.betavariate(1.2, 30), 3)


def support_triage(sim: Sim) -> None:
    rng = sim.rng("support_triage")
    for ts in arrivals(rng, 250, CUSTOMER, weekend=1.6):
        task = new_task(rng, "support_triage", ts, "customer")
        support_task(sim, rng, task, ts)


def support_task(sim: Sim, rng: random.Random, task: Task, ts: datetime) -> None:
    ticket_tokens = tokens(rng, 700, 0.5, 120, 6000)
    pii = poisson(rng, 0.8)
    c = Call(
        intent="triage_ticket",
        prompt=("triage_classify", "v2"),
        reason="primary",
        chain=["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"],
        input_tokens=ticket_tokens,
        output_tokens=tokens(rng, 45, 0.3, 12, 120),
        schema_valid=rng.random() < 0.997,
        cache_read=1024 if ticket_tokens >= 1400 and rng.random() < 0.5 else 0,
        retries=2,
        pii=pii,
        injection=injection_score(rng, 0.005),
    )
    if c.injection > 0.9:
        rejected(sim, rng, task, ts, 1, c, "blocked", "prompt_injection", 400)
        outcome(sim, task, "failed", 0.0, lognormal(rng, 600, 0.5), "app:helpdesk")
        return
    row = call(sim, rng, task, ts, 1, c)
    truth = truth_of(rng, (0.90, 0.06, 0.04))
    maybe_judge(sim, rng, task, row, truth, "answer", "triage_label_v1", 0.06)
    if row["status"] == "ok" and rng.random() < 0.65:
        row, truth = support_draft(sim, rng, task, ticket_tokens, pii, 2)
        follow_up = rng.random() < 0.10 and row["ts_end"] < END - timedelta(hours=8)
        if row["status"] == "ok" and follow_up:  # the customer follows up
            row, truth = support_draft(sim, rng, task, ticket_tokens + 400, pii, 3)
    if row["status"] == "error":
        status = "failed"
    elif rng.random() < RESOLVE_CHANCE[truth]:
        status = "resolved"
    else:
        status = "failed" if rng.random() < 0.67 else "abandoned"
    value = 4.0 if status == "resolved" else 0.0
    outcome(sim, task, status, value, lognormal(rng, 9000, 0.8), "app:helpdesk")


def draft_route(rng: random.Random, ts: datetime) -> tuple[str, list[str]]:
    draw = rng.random()
    small = ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"]
    if draw < 0.06:
        return "risk-high-flagged", ["anthropic/claude-sonnet-4", "openai/gpt-4o"]
    if draw < 0.58:
        return "cost-tier-downgrade", small
    if draw < 0.66 and ts.weekday() < 5 and 13 <= ts.hour < 17:  # p95 of gpt-4o over the SLO at peak
        return "latency-slo-override", small
    return "primary", ["openai/gpt-4o", "anthropic/claude-sonnet-4"]


def support_draft(
    sim: Sim, rng: random.Random, task: Task, ticket_tokens: int, pii: int, step: int
) -> tuple[dict[str, Any], str]:
    ts = task.end + timedelta(milliseconds=rng.uniform(60, 400))
    if step == 3:
        ts = task.end + timedelta(seconds=lognormal(rng, 1800, 0.9))
    reason, chain = draft_route(rng, ts)
    c = Call(
        intent="draft_support_reply",
        prompt=("support_reply", "v5"),
        reason=reason,
        chain=chain,
        input_tokens=min(
            CONTEXT_BUDGET["draft_support_reply"], ticket_tokens + tokens(rng, 1700, 0.45, 300, 7000)
        ),
        output_tokens=tokens(rng, 260, 0.5, 40, 1500),
        cache_read=1024 if rng.random() < 0.55 else 0,
        stream=True,
        retries=2,
        retrieval=doc_ids(rng, {}, "kb", rng.randint(2, 5)),
        pii=pii,
        injection=injection_score(rng, 0.0),
    )
    row = call(sim, rng, task, ts, step, c)
    truth = truth_of(rng, DRAFT_QUALITY[row["response_model"] or chain[0]])
    component = pick(rng, {"answer": 0.55, "retrieval": 0.25, "policy_compliance": 0.20})
    maybe_judge(sim, rng, task, row, truth, component, "support_reply_v3", 0.08)
    return row, truth


# --------------------------------------------------------------------------- invoice_parsing


def invoice_parsing(sim: Sim) -> None:
    rng = sim.rng("invoice_parsing")
    for ts in arrivals(rng, 215, OFFICE, weekend=0.6):
        task = new_task(rng, "invoice_parsing", ts, "service")
        invoice_task(sim, rng, task, ts, "app:invoice-service")


def invoice_call(
    sim: Sim,
    rng: random.Random,
    task: Task,
    ts: datetime,
    step: int,
    pinned: str | None = None,
    ledger: Ledger | None = None,
) -> tuple[dict[str, Any], str]:
    drift = ts >= DRIFT_FROM
    valid = rng.random() < ((0.86 if drift else 0.975) if step == 1 else (0.60 if drift else 0.75))
    chain = [pinned] if pinned else ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"]
    c = Call(
        intent="extract_invoice",
        prompt=("invoice_extract", "v4" if drift else "v3"),
        reason="primary",
        chain=chain,
        input_tokens=tokens(rng, 1900, 0.5, 400, 12_000),
        output_tokens=tokens(rng, 380, 0.3, 120, 1024),
        cache_read=1024 if rng.random() < 0.6 else 0,
        request_model=pinned,
        schema_valid=valid,
        pii=poisson(rng, 0.3),
        injection=round(rng.betavariate(1, 60), 3),
    )
    if ledger is not None and not ledger.admit(ts, c):
        row = rejected(sim, rng, task, ts, step, c, "over_budget", "budget_exceeded", 429)
        ledger.reject(sim, row)
        return row, "incorrect"
    row = call(sim, rng, task, ts, step, c)
    if ledger is not None:
        ledger.settle(sim, row)
    if row["status"] == "error":
        return row, "incorrect"
    truth = truth_of(rng, (0.72, 0.14, 0.14) if drift else (0.90, 0.06, 0.04)) if valid else "incorrect"
    maybe_judge(sim, rng, task, row, truth, "answer", "invoice_fields_v2", 0.10)
    return row, truth


def invoice_task(
    sim: Sim,
    rng: random.Random,
    task: Task,
    ts: datetime,
    reporter: str,
    pinned: str | None = None,
    ledger: Ledger | None = None,
) -> None:
    row, truth = invoice_call(sim, rng, task, ts, 1, pinned, ledger)
    if row["schema_valid"] is False and rng.random() < 0.9:  # the service re-asks once
        again = row["ts_end"] + timedelta(milliseconds=rng.uniform(50, 300))
        row, truth = invoice_call(sim, rng, task, again, 2, pinned, ledger)
    if row["status"] != "ok" or not row["schema_valid"]:
        status = "failed"
    else:
        chance = {"correct": 0.97, "partial": 0.6, "incorrect": 0.2}[truth]
        status = "resolved" if rng.random() < chance else "failed"
    value = 1.5 if status == "resolved" else 0.0
    outcome(sim, task, status, value, lognormal(rng, 1200, 0.9), reporter)


@dataclass
class Ledger:
    """The daily cap of one virtual key: reserve the worst case, settle the real cost."""

    key: str
    cap: float
    model: str
    spent: float = 0.0
    warned: bool = False
    breached: bool = False

    def admit(self, ts: datetime, c: Call) -> bool:
        """Fail fast once breached; otherwise admit when the worst-case cost still fits under the cap."""
        worst, _ = price(MODELS[self.model], ts, (c.input_tokens, 1024, 0), 0.0)
        return not self.breached and self.spent + worst <= self.cap

    def reject(self, sim: Sim, row: dict[str, Any]) -> None:
        if self.breached:
            return
        self.breached = True
        sim.event(
            row["ts_start"],
            "fleetdeck:budget",
            "system",
            "budget.breach",
            f"key:{self.key}",
            scope="key",
            period="daily",
            cap_usd=self.cap,
            spent_usd=round(self.spent, 4),
            request_id=row["request_id"],
            effect="fail fast with 429 until 00:00 UTC",
        )

    def settle(self, sim: Sim, row: dict[str, Any]) -> None:
        self.spent += row["cost_usd"]
        if not self.warned and self.spent >= 0.8 * self.cap:
            self.warned = True
            sim.event(
                row["ts_end"],
                "fleetdeck:budget",
                "system",
                "budget.warning",
                f"key:{self.key}",
                scope="key",
                period="daily",
                cap_usd=self.cap,
                spent_usd=round(self.spent, 4),
                threshold=0.8,
            )


def invoice_backfill(sim: Sim) -> None:
    """Week 7: a prod batch job re-extracts old invoices with gpt-4o until its key's daily cap stops it."""
    rng = sim.rng("invoice_backfill")
    ledger = Ledger(BACKFILL_KEY, BACKFILL_CAP_USD, "openai/gpt-4o")
    sim.event(
        BACKFILL[0] - timedelta(minutes=8),
        "maria.lopez",
        "human",
        "key.created",
        f"key:{BACKFILL_KEY}",
        environment="prod",
        owner="finance-data",
        daily_cap_usd=BACKFILL_CAP_USD,
        note="re-extract Q3 invoices with openai/gpt-4o",
    )
    ts = BACKFILL[0] + timedelta(seconds=rng.uniform(0, 5))
    while ts < BACKFILL[1]:
        task = Task(
            "tsk_" + ulid(ts, rng), hex_id(rng), "invoice_parsing", "prod", BACKFILL_KEY, "acme", "batch"
        )
        invoice_task(sim, rng, task, ts, "job:invoice-backfill", "openai/gpt-4o", ledger)
        ts = max(ts + timedelta(seconds=rng.uniform(6, 18)), task.end)
    sim.event(
        BACKFILL[1] + timedelta(minutes=1),
        "ben.okafor",
        "human",
        "key.revoked",
        f"key:{BACKFILL_KEY}",
        reason="backfill kept hitting its daily cap; rerun off-peak with gpt-4o-mini",
    )


# --------------------------------------------------------------------------- refund_agent


TOOL_QUALITY = (0.90, 0.07, 0.03)
LOOP_QUALITY = (0.04, 0.12, 0.84)


@dataclass
class Agent:
    """The running state of one refund_agent task."""

    task: Task
    customer: str
    order: str
    step: int = 0
    failed: bool = False


def refund_agent(sim: Sim) -> None:
    rng = sim.rng("refund_agent")
    for ts in arrivals(rng, 40, CUSTOMER, weekend=1.9):
        task = new_task(rng, "refund_agent", ts, "customer")
        agent = Agent(task, f"cus_{rng.getrandbits(40):010x}", f"ord_{rng.getrandbits(40):010x}")
        refund_task(sim, rng, agent, ts)


def route_stopped(ts: datetime) -> bool:
    return RUNAWAY[1] <= ts < ROUTE_RESUMED


def agent_call(
    sim: Sim, rng: random.Random, agent: Agent, ts: datetime, tool: dict[str, Any] | None, loop: bool = False
) -> dict[str, Any]:
    agent.step += 1
    step = agent.step
    final = tool is None
    c = Call(
        intent="refund_agent",
        prompt=("refund_agent", "v7"),
        reason="cost-tier-downgrade" if final else "tool-call-required",
        chain=["anthropic/claude-haiku-4-5", "openai/gpt-4o-mini"]
        if final
        else ["anthropic/claude-sonnet-4", "openai/gpt-4o"],
        input_tokens=tokens(rng, 1900 + (900 if loop else 650) * (step - 1), 0.15, 800, 90_000),
        output_tokens=tokens(rng, 230 if final else 110, 0.35, 20, 800),
        cache_read=1536 if step > 1 and rng.random() < 0.85 else 0,
        retries=2,
        finish="stop" if final else "tool_calls",
        tool_calls=[tool] if tool else None,
        pii=poisson(rng, 1.2) if step == 1 else 0,
        injection=injection_score(rng, 0.003 if step == 1 else 0.0),
    )
    if route_stopped(ts):
        row = rejected(sim, rng, agent.task, ts, step, c, "blocked", "route_stopped", 503)
    elif c.injection > 0.9:
        row = rejected(sim, rng, agent.task, ts, step, c, "blocked", "prompt_injection", 400)
    else:
        row = call(sim, rng, agent.task, ts, step, c)
    agent.failed = row["status"] != "ok"
    if not agent.failed:
        truth = truth_of(rng, LOOP_QUALITY if loop else TOOL_QUALITY)
        component = "answer" if final else pick(rng, {"tool_selection": 0.7, "policy_compliance": 0.3})
        maybe_judge(sim, rng, agent.task, row, truth, component, "refund_policy_v2", 0.08)
    return row


def next_step_at(rng: random.Random, agent: Agent) -> datetime:
    return agent.task.end + timedelta(milliseconds=lognormal(rng, 650, 0.5))  # tool execution


def refund_task(sim: Sim, rng: random.Random, agent: Agent, ts: datetime) -> None:
    lookup = {"name": "crm.lookup", "arguments": {"customer_id": agent.customer}, "status": "ok"}
    agent_call(sim, rng, agent, ts, lookup)
    if RUNAWAY[0] <= ts < RUNAWAY[1] and rng.random() < 0.85 and not agent.failed:
        runaway(sim, rng, agent)
        return
    plan = [{"name": "orders.get", "arguments": {"order_id": agent.order}, "status": "ok"}]
    if rng.random() < 0.35:
        plan.append({"name": "kb.search", "arguments": {"query": "refund policy"}, "status": "ok"})
    if rng.random() < 0.15:
        plan.append(lookup)
    for tool in plan:
        if agent.failed:
            break
        agent_call(sim, rng, agent, next_step_at(rng, agent), tool)
    if agent.failed:
        outcome(sim, agent.task, "failed", 0.0, lognormal(rng, 900, 0.6), "app:refund-bot")
        return
    if rng.random() < 0.78:
        status = issue_refund(sim, rng, agent)
    else:  # not eligible: the agent explains why
        row = agent_call(sim, rng, agent, next_step_at(rng, agent), None)
        status = "resolved" if row["status"] == "ok" and rng.random() < 0.85 else "failed"
    if status == "resolved" and rng.random() < 0.04:
        status = "abandoned"
    value = 8.0 if status == "resolved" else 0.0
    outcome(sim, agent.task, status, value, lognormal(rng, 1800, 0.7), "app:refund-bot")


def issue_refund(sim: Sim, rng: random.Random, agent: Agent) -> str:
    """The payments tool needs approval: request, human (or policy) decision, then the final reply."""
    amount = round(lognormal(rng, 45, 1.1), 2)
    approval_id = f"apr_{rng.getrandbits(48):012x}"
    tool = {
        "name": "payments.issue_refund",
        "arguments": {"order_id": agent.order, "amount_usd": amount},
        "status": "pending_approval",
        "approval_id": approval_id,
    }
    row = agent_call(sim, rng, agent, next_step_at(rng, agent), tool)
    if agent.failed:
        return "failed"
    granted = decide_approval(sim, rng, agent.task, row, approval_id, amount)
    agent.task.end = max(agent.task.end, sim.audit[-1].ts)
    row = agent_call(sim, rng, agent, next_step_at(rng, agent), None)
    return "resolved" if granted and row["status"] == "ok" else "failed"


def review_time(rng: random.Random, ts: datetime) -> datetime:
    if 7 <= ts.hour < 20:
        wait = lognormal(rng, 540 if ts.weekday() < 5 else 2400, 0.8)
        decided = ts + timedelta(seconds=wait)
    else:
        morning = ts.replace(hour=7, minute=0, second=0, microsecond=0)
        if ts.hour >= 20:
            morning += timedelta(days=1)
        decided = morning + timedelta(seconds=lognormal(rng, 1800, 0.6))
    return max(ts + timedelta(seconds=5), min(decided, END - timedelta(minutes=20)))


def decide_approval(
    sim: Sim, rng: random.Random, task: Task, row: dict[str, Any], approval_id: str, amount: float
) -> bool:
    subject = f"approval:{approval_id}"
    asked = row["ts_end"]
    sim.event(
        asked,
        task.key_id,
        "key",
        "approval.requested",
        subject,
        task_id=task.task_id,
        request_id=row["request_id"],
        tool="payments.issue_refund",
        amount_usd=amount,
        tenant=task.tenant,
    )
    decided = review_time(rng, asked)
    reviewer = rng.choice(REVIEWERS)
    wait_s = round((decided - asked).total_seconds())
    if amount > 250:  # above the auto-approval limit: the policy denies, a human may override
        sim.event(
            asked + timedelta(milliseconds=3),
            "fleetdeck:policy",
            "system",
            "approval.denied",
            subject,
            task_id=task.task_id,
            reason="amount above refund limit 250.00 USD",
        )
        if rng.random() < 0.6:
            sim.event(
                decided,
                reviewer,
                "human",
                "override",
                subject,
                task_id=task.task_id,
                overrides="approval.denied",
                decision="granted",
                reason=rng.choice(("long-standing customer; manager sign-off", "duplicate charge confirmed")),
                wait_s=wait_s,
            )
            return True
        reason = "no exception to the refund limit"
        sim.event(
            decided,
            reviewer,
            "human",
            "approval.denied",
            subject,
            task_id=task.task_id,
            reason=reason,
            wait_s=wait_s,
        )
        return False
    if rng.random() < 0.88:
        sim.event(
            decided, reviewer, "human", "approval.granted", subject, task_id=task.task_id, wait_s=wait_s
        )
        return True
    reason = rng.choice(("outside the 30-day refund window", "refund already issued", "item not returned"))
    sim.event(
        decided,
        reviewer,
        "human",
        "approval.denied",
        subject,
        task_id=task.task_id,
        reason=reason,
        wait_s=wait_s,
    )
    return False


def runaway(sim: Sim, rng: random.Random, agent: Agent) -> None:
    """Week 4: crm.lookup returns partial pages and the agent keeps calling it, with a growing context."""
    page = {
        "name": "crm.lookup",
        "arguments": {"customer_id": agent.customer, "page": 2},
        "status": "partial",
    }
    for _ in range(rng.randint(18, 64)):
        ts = next_step_at(rng, agent)
        agent_call(sim, rng, agent, ts, page, loop=True)
        if agent.failed:
            break
    status = "abandoned" if rng.random() < 0.6 else "failed"
    outcome(sim, agent.task, status, 0.0, lognormal(rng, 900, 0.6), "app:refund-bot")


# --------------------------------------------------------------------------- scripted audit events


def scripted_events(sim: Sim) -> None:
    """Operator and system events around the scenarios, besides those emitted while simulating."""
    sim.event(
        datetime(2026, 9, 7, 8, 12), "maria.lopez", "human", "policy.reloaded", "policy:routes.yaml", routes=6
    )
    sim.event(
        DOC_PROMPT_V2,
        "priya.shah",
        "human",
        "prompt.pin",
        "prompt:doc_summary@v2",
        previous="v1",
        version="v2",
    )
    outage_events(sim)
    runaway_events(sim)
    sim.event(DEV_KEY_REVOKED, "maria.lopez", "human", "key.revoked", "key:k-dev-sam", reason="left the team")
    for week in range(1, 9):
        monday = START + timedelta(weeks=week - 1, hours=9, minutes=12)
        version = "v4" if monday >= DRIFT_FROM - timedelta(minutes=30) else "v3"
        sim.event(
            monday,
            "priya.shah",
            "human",
            "eval.run",
            "golden:invoices-v2",
            prompt=f"invoice_extract@{version}",
            cases=60,
            passed=57 if version == "v4" else 58,
            gate_passed=True,
        )
    sim.event(
        DRIFT_FROM - timedelta(minutes=5),
        "priya.shah",
        "human",
        "prompt.added",
        "prompt:invoice_extract@v4",
        change="shorter field instructions",
    )
    sim.event(
        DRIFT_FROM,
        "priya.shah",
        "human",
        "prompt.pin",
        "prompt:invoice_extract@v4",
        previous="v3",
        version="v4",
    )
    drift_alert(sim, datetime(2026, 10, 14, 11, 0))
    for day in range(1, 56):
        sim.event(START + timedelta(days=day), "fleetdeck:audit", "system", "audit.checkpoint", "audit_log")


def outage_events(sim: Sim) -> None:
    for offset, model, fallback in (
        (0, "openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"),
        (20, "openai/gpt-4o", "anthropic/claude-sonnet-4"),
    ):
        opened = BREAKER[0] + timedelta(seconds=offset)
        sim.event(
            opened,
            "fleetdeck:breaker",
            "system",
            "breaker.opened",
            f"provider:{model}",
            failures=5,
            window_s=60,
            last_error="server_error 503",
            fallback=fallback,
        )
        sim.event(
            BREAKER[1] + timedelta(seconds=offset),
            "fleetdeck:breaker",
            "system",
            "breaker.closed",
            f"provider:{model}",
        )
    for intent in ("triage_ticket", "draft_support_reply", "extract_invoice"):
        sim.event(
            BREAKER[0] + timedelta(seconds=1),
            "fleetdeck:router",
            "system",
            "route.fallback",
            f"route:{intent}",
            reason_code="provider-outage-fallback",
            provider="openai",
        )
    sim.event(
        BREAKER[0] + timedelta(seconds=30),
        "fleetdeck:alerts",
        "system",
        "alert.raised",
        "provider:openai",
        kind="breaker",
        severity="critical",
        message="openai circuit open; traffic served by anthropic fallbacks",
    )


def runaway_events(sim: Sim) -> None:
    alert_at = RUNAWAY[0] + timedelta(minutes=45)
    window = [
        t["cost_usd"]
        for t in sim.traces
        if t["workflow_id"] == "refund_agent" and alert_at - timedelta(hours=1) <= t["ts_start"] < alert_at
    ]
    sim.event(
        alert_at,
        "fleetdeck:alerts",
        "system",
        "alert.raised",
        "route:refund_agent",
        kind="cost_spike",
        severity="warning",
        window="1h",
        cost_usd=round(sum(window), 2),
        calls=len(window),
    )
    sim.event(
        RUNAWAY[1],
        "ben.okafor",
        "human",
        "route.stopped",
        "route:refund_agent",
        reason="runaway crm.lookup loop: tasks repeat the lookup dozens of times",
    )
    sim.event(
        ROUTE_RESUMED - timedelta(minutes=2),
        "maria.lopez",
        "human",
        "policy.reloaded",
        "policy:routes.yaml",
        change="refund_agent.max_steps = 12",
    )
    sim.event(
        ROUTE_RESUMED,
        "maria.lopez",
        "human",
        "route.resumed",
        "route:refund_agent",
        reason="crm.lookup pagination fixed; max_steps added",
    )


def drift_alert(sim: Sim, at: datetime) -> None:
    judged = {t["request_id"]: t["ts_start"] for t in sim.traces if t["workflow_id"] == "invoice_parsing"}
    before, after = [], []
    for e in sim.evals:
        ts = judged.get(e["request_id"])
        if ts is not None and ts < DRIFT_FROM:
            before.append(e["verdict"] == "incorrect")
        elif ts is not None and ts < at:
            after.append(e["verdict"] == "incorrect")
    baseline, current = sum(before) / max(1, len(before)), sum(after) / max(1, len(after))
    sim.event(
        at,
        "fleetdeck:drift",
        "system",
        "alert.raised",
        "workflow:invoice_parsing",
        kind="drift",
        severity="warning",
        metric="judge_incorrect_share",
        baseline=round(baseline, 3),
        current=round(current, 3),
        samples=len(after),
    )


# --------------------------------------------------------------------------- audit chain


GENESIS = "0" * 64


def audit_rows(events: list[AuditEvent]) -> list[dict[str, Any]]:
    """Order events by time and chain them as the recorder does (console/store/audit.py)."""
    rows: list[dict[str, Any]] = []
    prev = audit.GENESIS_HASH
    for seq, event in enumerate(sorted(events, key=lambda e: e.ts), start=1):
        payload = dict(event.payload)
        if event.action == "audit.checkpoint":
            payload = {"through_seq": seq - 1, "head_hash": prev}
        entry = audit.chain(
            audit.AuditEvent(
                actor=event.actor,
                actor_kind=event.actor_kind,
                action=event.action,
                subject=event.subject,
                payload=payload,
                ts=event.ts,
                event_id=f"sample-{seq:06d}",  # fixed, so the dataset regenerates byte for byte
            ),
            seq,
            prev,
        )
        row = entry.row()
        row["payload"] = canonical(payload).decode()
        rows.append(row)
        prev = entry.hash
    return rows


# --------------------------------------------------------------------------- payloads

# The redacted bodies of the invoice_parsing calls the judge saw, so judged production
# traffic can be harvested into golden cases (`fleetdeck eval harvest`). They come from a
# stream of their own, after the simulation: the other tables do not change with them.
INVOICE_PROMPTS = {
    "v3": "Extract the invoice's fields: vendor (the issuing company), invoice_number, date "
    "(YYYY-MM-DD), total (a number, taxes included) and currency (ISO 4217). Reply with the JSON only.",
    "v4": "Extract vendor, invoice_number, date, total, currency as JSON.",
}
INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "vendor": {"type": "string"},
        "invoice_number": {"type": "string"},
        "date": {"type": "string"},
        "total": {"type": "number"},
        "currency": {"type": "string"},
    },
    "required": ["vendor", "invoice_number", "date", "total", "currency"],
}
VENDORS = ("Northwind Traders", "Contoso Ltd", "Fabrikam GmbH", "Tailspin Toys", "Litware SA", "Adatum Corp")
CURRENCIES = ("EUR", "USD", "GBP")


def payloads(sim: Sim) -> list[dict[str, Any]]:
    rng = sim.rng("payloads")
    traces = {t["request_id"]: t for t in sim.traces if t["workflow_id"] == "invoice_parsing"}
    rows = []
    for judged in sim.evals:
        trace = traces.get(judged["request_id"])
        if trace is None:
            continue
        invoice = invoice_fields(rng, trace["ts_start"])
        request = {
            "model": trace["request_model"] or "route:extract_invoice",
            "messages": [
                {"role": "system", "content": INVOICE_PROMPTS[trace["prompt_version"]]},
                {"role": "user", "content": invoice_text(invoice)},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "invoice", "schema": INVOICE_SCHEMA},
            },
            "temperature": 0,
            "max_tokens": 200,
        }
        answer = invoice_answer(rng, invoice, judged["verdict"], trace["schema_valid"])
        response = {
            "object": "chat.completion",
            "model": trace["response_model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
            ],
        }
        rows.append(
            {
                "payload_ref": trace["request_id"],
                "request_id": trace["request_id"],
                "ts": trace["ts_end"],
                "request": canonical(request).decode(),
                "response": canonical(response).decode(),
            }
        )
    rows.sort(key=lambda row: (row["ts"], row["request_id"]))
    return rows


def invoice_fields(rng: random.Random, ts: datetime) -> dict[str, Any]:
    issued = ts - timedelta(days=rng.randint(1, 40))
    return {
        "vendor": rng.choice(VENDORS),
        "invoice_number": f"INV-{issued.year}-{rng.randint(10_000, 99_999)}",
        "date": issued.strftime("%Y-%m-%d"),
        "total": round(rng.uniform(40, 4_000), 2),
        "currency": rng.choice(CURRENCIES),
    }


def invoice_text(invoice: dict[str, Any]) -> str:
    net = round(invoice["total"] / 1.2, 2)
    return (
        f"INVOICE {invoice['invoice_number']}\n{invoice['vendor']}\nDate: {invoice['date']}\n"
        f"Services rendered: {net:.2f} {invoice['currency']}\nVAT 20%: {invoice['total'] - net:.2f}\n"
        f"Total due: {invoice['total']:.2f} {invoice['currency']}"
    )


def invoice_answer(
    rng: random.Random, invoice: dict[str, Any], verdict: str, schema_valid: bool | None
) -> str:
    """What the model answered, as bad as its verdict says: invalid JSON, a wrong or missing field."""
    answer = dict(invoice)
    if verdict == "incorrect":
        wrong = rng.choice(("total", "vendor", "date"))
        answer[wrong] = {
            "total": round(invoice["total"] / 1.2, 2),  # the net amount instead of the total due
            "vendor": "VAT",
            "date": invoice["date"][:8] + "01",
        }[wrong]
    elif verdict == "partial":
        answer["currency"] = ""
    text = canonical(answer).decode()
    return text[: rng.randint(20, len(text) - 2)] if schema_valid is False else text


# --------------------------------------------------------------------------- tables


def schemas() -> dict[str, pa.Schema]:
    """Arrow schemas of the store's tables, read from the DuckDB migrations."""
    con = duckdb.connect()
    try:
        for path in sorted(MIGRATIONS.glob("*.sql")):
            con.execute(path.read_text())
        return {t: con.sql(f"SELECT * FROM {t} LIMIT 0").to_arrow_table().schema for t in TABLES}
    finally:
        con.close()


def to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    unknown = {k for row in rows for k in row} - set(schema.names)
    if unknown:
        raise ValueError(f"columns not in the table: {sorted(unknown)}")
    return pa.Table.from_pylist(rows, schema=schema)


def simulate(seed: int) -> Sim:
    sim = Sim(seed)
    doc_summaries(sim)
    support_triage(sim)
    invoice_parsing(sim)
    invoice_backfill(sim)
    refund_agent(sim)
    scripted_events(sim)
    sim.traces.sort(key=lambda t: (t["ts_start"], t["request_id"]))
    sim.outcomes.sort(key=lambda o: (o["ts"], o["task_id"]))
    sim.evals.sort(key=lambda e: (e["ts"], e["eval_id"]))
    stamps = [t["ts_end"] for t in sim.traces] + [o["ts"] for o in sim.outcomes] + [e.ts for e in sim.audit]
    latest = max(stamps + [e["ts"] for e in sim.evals])
    if latest >= END or min(t["ts_start"] for t in sim.traces) < START:
        raise AssertionError(f"dataset leaves its window: {latest}")
    return sim


def build(seed: int) -> dict[str, pa.Table]:
    sim = simulate(seed)
    tables = schemas()
    return {
        "traces": to_table(sim.traces, tables["traces"]),
        "payloads": to_table(payloads(sim), tables["payloads"]),
        "outcomes": to_table(sim.outcomes, tables["outcomes"]),
        "evals": to_table(sim.evals, tables["evals"]),
        "audit_log": to_table(audit_rows(sim.audit), tables["audit_log"]),
    }


# Unique-per-row columns compress better without a dictionary.
UNIQUE_COLUMNS = {
    "request_id",
    "trace_id",
    "parent_id",
    "task_id",
    "request_hash",
    "eval_id",
    "judge_request_id",
}
UNIQUE_COLUMNS |= {
    "ts_start",
    "ts_end",
    "ts",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "hash",
    "prev_hash",
    "payload",
}


def write(tables: dict[str, pa.Table], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        dictionary = [c for c in table.column_names if c not in UNIQUE_COLUMNS]
        path = out / f"{name}.parquet"
        pq.write_table(table, path, compression="zstd", compression_level=9, use_dictionary=dictionary)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    tables = build(args.seed)
    write(tables, args.out)
    for name, table in tables.items():
        size = (args.out / f"{name}.parquet").stat().st_size
        print(f"{name:10} {table.num_rows:>7,} rows  {size / 1e6:6.2f} MB")


if __name__ == "__main__":
    main()
