"""`fleetdeck prompts optimize`: the search of console/quality/optimize.py, through the gateway.

Every call of the search goes over HTTP with a virtual key, like `eval run`'s (whose runner
sends the cases, reads their traces and checks the asserts here too): the candidates' cases,
their judge calls and the optimizer's calls are traces of workflow `fleetdeck-optimize`
under one task id (`optimize-<id>`), keyed, priced and capped by the gateway. A candidate is
not a registry version while it is scored: its template is rendered here, as the prompt
step would render it, and sent as the system message. The budget is kept with the
instance's own prices (the admin API's `price` action bounds each step before it is sent;
`optimize_spend` reads what the traces cost after it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pyarrow as pa

from console.clock import new_request_id
from console.commands.eval_run import (
    JUDGE_INSTRUCTIONS,
    TRACE_WAIT_S,
    CaseResult,
    GatewayTarget,
    Runner,
    RunOptions,
    gateway_target,
)
from console.errors import DomainError
from console.gateway.budget import prompt_token_bound
from console.gateway.prompts import PLACEHOLDER
from console.policy import Policy
from console.progress import Progress, Step, silent
from console.quality import golden, optimize
from console.quality.golden import Case, GoldenSet
from console.quality.optimize import CaseOutcome, Outcome, Proposal, Scored, SearchLimits, StepFailed
from console.settings import Settings

WORKFLOW = "fleetdeck-optimize"
DEFAULT_OPTIMIZER = golden.DEFAULT_JUDGE  # the local model
MAX_PROMPT_CHARS = 4000
REASONING_CHARS = 400
REASONING_SCHEMA_CHARS = 240  # as the judge's grade: a grammar llama.cpp builds
TOKENS_PER_CANDIDATE = 400  # of the optimizer's answer
JUDGE_MAX_TOKENS = 160
OPTIMIZER_INSTRUCTIONS = (
    "You improve the system prompt of an LLM application. You are shown the current prompt and the "
    "test cases it fails: each case's user input, the checks its answer must pass, the answer it gave "
    "and why it failed. Propose up to {count} edited versions of the whole prompt that would pass these "
    "checks without breaking the others: add the instruction or fact that is missing, keep what works, "
    "keep every {{{{placeholder}}}}. Reply with JSON only: "
    '{{"candidates": [{{"reasoning": "<why this edit fixes the failures>", '
    '"prompt": "<the full new prompt>"}}]}}'
)


class OptimizeError(Exception):
    """A search that cannot be made (no such prompt, an unpriced route, …)."""


@dataclass(frozen=True, slots=True)
class OptimizeOptions:
    name: str
    route: str | None = None
    optimizer_route: str = DEFAULT_OPTIMIZER
    rounds: int = 3
    candidates: int = 3
    budget_usd: float = 1.0
    holdout: float = 0.3
    seed: int = 0
    max_tokens: int = 256  # for cases that set none
    dry_run: bool = False
    policy: Policy | None = None
    actor: str = "cli"

    @property
    def limits(self) -> SearchLimits:
        return SearchLimits(self.rounds, self.candidates, self.budget_usd)


@dataclass
class OptimizeResult:
    prompt: dict[str, Any]  # the version searched from (name, version, template)
    golden_set: str
    route: str
    task_id: str
    train: list[int]
    held_out: list[int]
    worst_case: dict[str, float]
    outcome: Outcome | None = None  # None for a dry run
    added: dict[str, Any] | None = None  # the registry's answer for the adopted candidate
    lineage: dict[str, Any] = field(default_factory=dict)


def optimize_prompt(
    settings: Settings, golden_set: GoldenSet, options: OptimizeOptions, progress: Progress = silent
) -> OptimizeResult:
    progress(Step(0, None, "opening the gateway"))
    run_options = RunOptions(route=options.route, policy=options.policy, actor=options.actor)
    with gateway_target(settings, run_options) as target, _port(target, golden_set, options) as port:
        current = port.current_prompt()
        train, held_out = optimize.split(len(port.cases), options.holdout, options.seed)
        numbers = [*train, *held_out]
        parent = port.worst_parent(current["version"], current["template"], train)
        longest = "x" * MAX_PROMPT_CHARS
        worst = optimize.worst_case(port, current["template"], longest, numbers, options.limits, parent)
        result = OptimizeResult(
            current, str(golden_set.name), port.runner.route, port.task, train, held_out, worst
        )
        if options.dry_run:
            return result
        search = optimize.Search(port, options.limits, train, held_out, progress)
        result.outcome = search.run(current["template"], current["version"])
        _adopt(port, result, options)
    return result


@contextlib.contextmanager
def _port(target: GatewayTarget, golden_set: GoldenSet, options: OptimizeOptions) -> Iterator[GatewayPort]:
    port = GatewayPort(target, golden_set.model_copy(update={"workflow": WORKFLOW}), options)
    try:
        yield port
    finally:
        port.close()


class CandidateRunner(Runner):
    """`eval run`'s runner with the template under test rendered here as the system message."""

    template = ""
    max_tokens = 256

    def body(self, case: Case) -> dict[str, Any]:
        body = super().body(case)
        body.pop("metadata", None)
        system = PLACEHOLDER.sub(lambda m: str(case.vars.get(m.group(1), m.group(0))), self.template)
        body["messages"] = [{"role": "system", "content": system}, *body["messages"]]
        if not any(isinstance(body.get(name), int) for name in ("max_tokens", "max_completion_tokens")):
            body["max_tokens"] = self.max_tokens
        return body

    def prompt_headers(self) -> dict[str, str]:
        return {}


class GatewayPort:
    """The search's `Port`: cases and optimizer calls through the gateway, bounds from its prices."""

    def __init__(self, target: GatewayTarget, golden_set: GoldenSet, options: OptimizeOptions) -> None:
        if target.ask is None:
            raise OptimizeError("this gateway has no admin API to price the search with")
        self.target, self.golden_set, self.options = target, golden_set, options
        self.ask = target.ask
        self.task = f"optimize-{new_request_id()}"
        self.cases = golden_set.cases()
        self.runner = CandidateRunner(target, golden_set, RunOptions(route=options.route), task=self.task)
        self.runner.max_tokens = options.max_tokens
        self.optimizer_calls = 0
        self.bounded = 0.0  # the worst cases of every step sent: what is spent, should traces lag

    def close(self) -> None:
        self.runner.client.close()

    def current_prompt(self) -> dict[str, Any]:
        """The version the search starts from: the pinned one, else the latest."""
        try:
            return self.ask("prompts", {"action": "get", "name": self.options.name})
        except DomainError as exc:
            raise OptimizeError(exc.message) from None

    # -- scoring ------------------------------------------------------------------------

    def evaluate(self, template: str, cases: Sequence[int]) -> list[CaseOutcome]:
        self.bounded += self.evaluation_bound(template, cases)
        self.runner.template = template
        results = self.runner.evaluate([(n, self.cases[n - 1]) for n in cases])
        return [self._outcome(self.cases[r.number - 1], r) for r in results]

    def _outcome(self, case: Case, result: CaseResult) -> CaseOutcome:
        answer = result.answer
        failed = "; ".join(a.reason for a in result.asserts if not a.passed)
        return CaseOutcome(
            result.number,
            result.passed,
            answer.cost_usd or 0.0,
            answer.tokens or 0,
            input=_case_input(case),
            asserts="; ".join(_assert_text(a) for a in case.asserts),
            answer=answer.text if answer.text is not None else answer.error,
            why=failed,
        )

    def evaluation_bound(self, template: str, cases: Sequence[int]) -> float:
        self.runner.template = template
        items = []
        for n in cases:
            case = self.cases[n - 1]
            body = self.runner.body(case)
            output = int(body.get("max_completion_tokens") or body.get("max_tokens") or 0)
            items.append(self._item(self.runner.route, prompt_token_bound(body), output))
            for assertion in case.asserts:
                if assertion.base_type == "llm-rubric":
                    judged = len(JUDGE_INSTRUCTIONS) + len(str(assertion.value)) + 4 * output + 64
                    items.append(self._item(self.golden_set.judge, judged, JUDGE_MAX_TOKENS))
        return self._price(items)

    # -- the optimizer ------------------------------------------------------------------

    def propose(self, parent: Scored, count: int) -> list[Proposal]:
        self.bounded += self.proposal_bound(parent, count)
        headers = {"X-Fleetdeck-Workflow": WORKFLOW, "X-Fleetdeck-Task": self.task}
        if self.target.key:
            headers["Authorization"] = f"Bearer {self.target.key}"
        self.optimizer_calls += 1
        try:
            response = self.runner.client.post(
                "/chat/completions", content=orjson.dumps(self._proposal_body(parent, count)), headers=headers
            )
        except httpx.HTTPError as exc:
            raise StepFailed(f"the optimizer {self.options.optimizer_route} did not answer: {exc}") from None
        if response.status_code != 200:
            why = _error_message(response)
            raise StepFailed(
                f"the optimizer {self.options.optimizer_route} failed ({response.status_code}): {why}"
            )
        return parse_proposals(_answer_text(response.json()))

    def proposal_bound(self, parent: Scored, count: int) -> float:
        body = self._proposal_body(parent, count)
        item = self._item(self.options.optimizer_route, prompt_token_bound(body), int(body["max_tokens"]))
        return self._price([item])

    def _proposal_body(self, parent: Scored, count: int) -> dict[str, Any]:
        return {
            "model": self.options.optimizer_route,
            "temperature": 0.7,
            "max_tokens": TOKENS_PER_CANDIDATE * count,
            "messages": [
                {"role": "system", "content": OPTIMIZER_INSTRUCTIONS.format(count=count)},
                {"role": "user", "content": reflection(parent)},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "candidates", "schema": proposal_schema(count)},
            },
        }

    def worst_parent(self, version: str, template: str, train: Sequence[int]) -> Scored:
        """A parent failing every train case with the longest answers: the dry run's optimizer call."""
        longest = "x" * (4 * self.options.max_tokens)
        failing = tuple(
            CaseOutcome(n, False, input=_case_input(self.cases[n - 1]), answer=longest, why=longest)
            for n in train
        )
        return Scored(optimize.Candidate(version, template), failing, ())

    # -- money --------------------------------------------------------------------------

    def _item(self, model: str, input_tokens: int, output_tokens: int) -> dict[str, Any]:
        return {"model": model, "input_tokens": input_tokens, "output_tokens": output_tokens}

    def _price(self, items: list[dict[str, Any]]) -> float:
        try:
            worst = self.ask("price", {"items": items})["worst_usd"]
        except DomainError as exc:
            raise OptimizeError(exc.message) from None
        unpriced = sorted({item["model"] for item, usd in zip(items, worst, strict=True) if usd is None})
        if unpriced:
            raise OptimizeError(
                f"{', '.join(unpriced)} has no known price, so the search cannot be held to --budget: "
                "give it one under providers.<name>.prices in the policy"
            )
        return float(sum(worst))

    def spent(self) -> float:
        """What the search's traces cost; the sum of the bounds when they lag behind."""
        expected = self.runner.calls + self.optimizer_calls
        if not expected:
            return 0.0
        deadline = time.monotonic() + TRACE_WAIT_S
        while True:
            found = self.target.rows({"name": "optimize_spend", "params": {"task_id": self.task}})
            calls, cost = (found[0]["calls"], float(found[0]["cost_usd"])) if found else (0, 0.0)
            if calls >= expected:
                return cost
            if time.monotonic() > deadline:
                return max(cost, self.bounded)
            time.sleep(0.2)


def reflection(parent: Scored) -> str:
    """What the optimizer is shown: the prompt and the train cases it fails."""
    failures = parent.failures()
    lines = [
        "The current prompt:",
        "<<<",
        parent.candidate.template,
        ">>>",
        "",
        f"It fails {len(failures)} of {len(parent.train)} test cases:",
    ]
    for case in failures:
        lines += [
            "",
            f"Case {case.number}",
            f"Input: {case.input}",
            f"Checks: {case.asserts}",
            f"Answer: {(case.answer or '')[:1000]}",
            f"Why it failed: {case.why[:500]}",
        ]
    return "\n".join(lines)


def proposal_schema(count: int) -> dict[str, Any]:
    """The optimizer's answer. No maxLength on the prompt and no maxItems: llama.cpp's grammar
    refuses repetitions that large (its max_tokens bounds the answer; `parse_proposals` the rest)."""
    item = {
        "type": "object",
        "properties": {
            "reasoning": {"type": "string", "maxLength": REASONING_SCHEMA_CHARS},
            "prompt": {"type": "string", "minLength": 1},
        },
        "required": ["reasoning", "prompt"],
    }
    return {
        "type": "object",
        "properties": {"candidates": {"type": "array", "items": item, "minItems": 1}},
        "required": ["candidates"],
    }


def parse_proposals(text: str | None) -> list[Proposal]:
    """The optimizer's candidates; none when its answer is not the JSON asked for."""
    document = _json_in(text or "")
    candidates = document.get("candidates") if isinstance(document, dict) else None
    proposals = []
    for item in candidates if isinstance(candidates, list) else []:
        prompt = item.get("prompt") if isinstance(item, dict) else None
        if isinstance(prompt, str) and prompt.strip() and len(prompt) <= MAX_PROMPT_CHARS:
            proposals.append(Proposal(prompt.strip(), str(item.get("reasoning") or "")[:REASONING_CHARS]))
    return proposals


def _json_in(text: str) -> Any:
    for chunk in (text, text[text.find("{") : text.rfind("}") + 1]):
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(chunk)
    return None


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


def _answer_text(body: Any) -> str | None:
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _case_input(case: Case) -> str:
    if case.input is not None:
        return PLACEHOLDER.sub(lambda m: str(case.vars.get(m.group(1), m.group(0))), case.input)
    return str((case.messages or [{}])[-1].get("content"))


def _assert_text(assertion: golden.Assertion) -> str:
    text = assertion.type if assertion.value is None else f"{assertion.type} {assertion.value!r}"
    return text if assertion.threshold is None else f"{text} (threshold {assertion.threshold})"


# -- the outcome ---------------------------------------------------------------------------


def _adopt(port: GatewayPort, result: OptimizeResult, options: OptimizeOptions) -> None:
    """The best candidate added as a new version with its lineage; never pinned."""
    outcome = result.outcome
    if outcome is None or outcome.best is None or outcome.baseline is None:
        return
    result.lineage = lineage(outcome.best, outcome, result, options)
    request = {
        "action": "add",
        "name": options.name,
        "template": outcome.best.candidate.template,
        "lineage": result.lineage,
        "actor": options.actor,
    }
    try:
        result.added = port.ask("prompts", request)
    except DomainError as exc:
        raise OptimizeError(exc.message) from None


def lineage(
    best: Scored, outcome: Outcome, result: OptimizeResult, options: OptimizeOptions
) -> dict[str, Any]:
    by_label = {s.candidate.label: s for s in outcome.scored}
    path: list[str] = []
    step = best.candidate
    while step.parent is not None:
        path.insert(0, step.label)
        step = by_label[step.parent].candidate
    baseline = outcome.baseline
    assert baseline is not None
    return {
        "parent": result.prompt["version"],
        "candidate": best.candidate.label,
        "path": path,
        "reasoning": best.candidate.reasoning,
        "score": _score(best),
        "parent_score": _score(baseline),
        "golden_set": result.golden_set,
        "route": result.route,
        "optimizer": options.optimizer_route,
        "task_id": result.task_id,
        "spent_usd": round(outcome.spent_usd, 8),
        "stop": outcome.stop.kind,
    }


def _score(scored: Scored) -> dict[str, Any]:
    return {
        "train": round(scored.train_rate, 4),
        "held_out": None if scored.held_out_rate is None else round(scored.held_out_rate, 4),
        "train_cases": len(scored.train),
        "held_out_cases": len(scored.held_out),
        "cost_usd": round(scored.cost_usd, 8),
        "tokens": scored.tokens,
    }


def table(outcome: Outcome) -> pa.Table:
    front = {s.candidate.label for s in outcome.front}
    best = outcome.best.candidate.label if outcome.best else None
    rows = [
        {
            "candidate": s.candidate.label,
            "round": s.candidate.round,
            "parent": s.candidate.parent or "",
            "train": f"{s.train_passed}/{len(s.train)}",
            "held_out": f"{s.held_out_passed}/{len(s.held_out)}" if s.held_out else "-",
            "train_rate": round(s.train_rate, 2),
            "held_out_rate": None if s.held_out_rate is None else round(s.held_out_rate, 2),
            "cost_usd": round(s.cost_usd, 6),
            "tokens": s.tokens,
            "pareto": "yes" if s.candidate.label in front else "",
            "chosen": "best" if s.candidate.label == best else "",
        }
        for s in outcome.scored
    ]
    return pa.Table.from_pylist(rows)


def worst_case_table(result: OptimizeResult, options: OptimizeOptions) -> pa.Table:
    worst, cases = result.worst_case, len(result.train) + len(result.held_out)
    rounds, count = options.rounds, options.candidates
    rows: list[tuple[str, int | None, float]] = [
        (f"score {result.prompt['version']} on {cases} cases", cases, worst["baseline"]),
        (f"{rounds} optimizer call(s)", rounds, rounds * worst["optimizer_call"]),
        (
            f"{rounds} x {count} candidates x {cases} cases",
            rounds * count * cases,
            rounds * count * worst["candidate"],
        ),
        ("total", None, worst["total"]),
    ]
    return pa.Table.from_pylist(
        [{"step": step, "calls": calls, "worst_usd": round(usd, 6)} for step, calls, usd in rows]
    )


def summary(result: OptimizeResult, options: OptimizeOptions) -> str:
    prompt = f"{options.name}@{result.prompt['version']}"
    split = f"{len(result.train)} train / {len(result.held_out)} held-out cases"
    if result.outcome is None:
        fits = "fits within" if result.worst_case["total"] <= options.budget_usd else "may exceed"
        return (
            f"Dry run: searching {prompt} on {result.golden_set} ({split}) may cost up to "
            f"${result.worst_case['total']:.6f}, which {fits} --budget ${options.budget_usd:.6f} "
            "(the search stops before a step that would pass it)."
        )
    outcome = result.outcome
    lines = [
        f"{prompt} on {result.golden_set} ({split}): {len(outcome.scored) - 1} candidate(s) in "
        f"{outcome.rounds} round(s), ${outcome.spent_usd:.6f} spent of ${options.budget_usd:.6f}; "
        f"stopped: {outcome.stop.why}. Task {result.task_id}.",
        *outcome.events,
    ]
    if result.added is None or outcome.best is None:
        lines.append(f"No candidate beats {prompt} on the held-out cases: nothing added.")
    elif not result.added["added"]:
        lines.append(
            f"The best candidate, {outcome.best.candidate.label}, is {result.added['version']} already."
        )
    else:
        version = result.added["version"]
        lines.append(
            f"Added {options.name} {version} (from {outcome.best.candidate.label}, parent "
            f"{result.prompt['version']}); not pinned: `fleetdeck prompts pin {options.name} {version}` "
            "makes it the one requests get."
        )
    return "\n".join(lines)
