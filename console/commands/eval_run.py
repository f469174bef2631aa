"""`fleetdeck eval run`: every case of a golden set through the gateway, asserts, the gate, the stored run.

The cases go over HTTP, with a virtual key, like any app's calls, so each one is a trace
(workflow `fleetdeck-eval`, the run's id as task_id, the prompt's version on it). When an
instance owns the data dir, its gateway answers and its admin API stores the run; with
none, an Engine is started here with its gateway on a free 127.0.0.1 port for the run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pyarrow as pa

from console.clock import new_request_id, utc_now
from console.commands import instance
from console.gateway.prompts import PLACEHOLDER
from console.policy import Policy
from console.progress import Progress, Step, silent
from console.quality import golden
from console.quality.asserts import Answer, AssertResult, check
from console.quality.golden import Case, EvalRun, GoldenSet
from console.settings import Settings

REQUEST_TIMEOUT_S = 600.0
TRACE_WAIT_S = 30.0
T = TypeVar("T")
GRADE_SCHEMA: dict[str, Any] = {
    "type": "object",
    # Bounded, so a small judge that repeats itself still closes the JSON within max_tokens.
    "properties": {"reason": {"type": "string", "maxLength": 240}, "pass": {"type": "boolean"}},
    "required": ["reason", "pass"],
}
JUDGE_INSTRUCTIONS = (
    "You grade an answer against a rubric. Reply with JSON: "
    '{"reason": "<one sentence>", "pass": true or false}. pass is true only when the answer meets the rubric.'
)


class EvalRunError(Exception):
    """A run that cannot be made (no gateway, a prompt the registry does not have, …)."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    route: str | None = None
    prompt: str | None = None
    gate: float | None = None
    policy: Policy | None = None
    actor: str = "cli"


@dataclass(frozen=True, slots=True)
class CaseResult:
    number: int
    description: str
    answer: Answer
    asserts: list[AssertResult]
    threshold: float | None

    @property
    def score(self) -> float:
        total = sum(result.weight for result in self.asserts)
        if not total:
            return 1.0 if self.answer.http_status == 200 else 0.0
        return sum(result.weight for result in self.asserts if result.passed) / total

    @property
    def passed(self) -> bool:
        if self.threshold is None:
            return self.answer.http_status == 200 and all(result.passed for result in self.asserts)
        return self.score + golden.SCORE_EPSILON >= self.threshold

    def as_json(self) -> dict[str, Any]:
        text = self.answer.text
        return {
            "number": self.number,
            "description": self.description,
            "passed": self.passed,
            "score": round(self.score, 4),
            "request_id": self.answer.request_id,
            "http_status": self.answer.http_status,
            "answer": text[:2000] if text is not None else None,
            "error": self.answer.error,
            "cost_usd": self.answer.cost_usd,
            "latency_ms": self.answer.latency_ms,
            "asserts": [result.as_json() for result in self.asserts],
        }


@dataclass(frozen=True, slots=True)
class RunResult:
    run: EvalRun
    results: list[CaseResult]
    gate: golden.Gate
    threshold: float | None
    baseline: golden.Baseline | None

    def table(self) -> pa.Table:
        rows = [
            {
                "case": r.number,
                "description": r.description[:48],
                "result": "PASS" if r.passed else "FAIL",
                "score": round(r.score, 2),
                "latency_ms": None if r.answer.latency_ms is None else round(r.answer.latency_ms),
                "cost_usd": None if r.answer.cost_usd is None else round(r.answer.cost_usd, 6),
                "failed": "; ".join(a.reason for a in r.asserts if not a.passed)[:90],
            }
            for r in self.results
        ]
        return pa.Table.from_pylist(rows)

    def summary(self) -> str:
        run = self.run
        prompt = f", prompt {run.prompt_name}@{run.prompt_version}" if run.prompt_name else ""
        lines = [
            f"{run.golden_set}: {run.passed}/{run.cases} passed ({run.score:.0%}) on {run.route}{prompt}; "
            f"run {run.run_id}"
        ]
        gate_text = f"gate {self.threshold:.0%}" if self.threshold is not None else "no threshold"
        if self.baseline is not None:
            gate_text += f", last passing run {self.baseline.run_id} at {self.baseline.score:.0%}"
        lines.append(
            f"Gate passed ({gate_text})."
            if self.gate.passed
            else "Gate FAILED: " + "; ".join(self.gate.reasons) + "."
        )
        return "\n".join(lines)


@dataclass
class GatewayTarget:
    """Where the cases go, and how the run reads traces and is stored."""

    url: str
    key: str | None
    rows: Callable[[Mapping[str, Any]], list[dict[str, Any]]]  # a named query
    store: Callable[[EvalRun], None]
    ask: Callable[[str, Mapping[str, Any]], dict[str, Any]] | None = None  # an admin action


def run_golden_set(
    settings: Settings, golden_set: GoldenSet, options: RunOptions, progress: Progress = silent
) -> RunResult:
    """`progress` hears each case sent, the traces read back, and each case checked."""
    progress(Step(0, None, "opening the gateway"))
    with gateway_target(settings, options) as target:
        return Runner(target, golden_set, options, progress).run()


@contextlib.contextmanager
def gateway_target(settings: Settings, options: RunOptions) -> Iterator[GatewayTarget]:
    """The running instance's gateway, else one opened here on a free port for the run."""
    with instance.opened(settings) as fleetdeck:
        url = fleetdeck.gateway(options.policy)
        yield GatewayTarget(
            url,
            fleetdeck.gateway_key(options.actor),
            lambda request: fleetdeck.query(request).to_pylist(),
            lambda run: _store(fleetdeck, run),
            fleetdeck.ask,
        )


class Runner:
    """Sends cases, reads their traces back, checks the asserts; `run` also concludes and stores
    the run. `evaluate` alone serves searches that score many prompts (prompts optimize)."""

    def __init__(
        self,
        target: GatewayTarget,
        golden_set: GoldenSet,
        options: RunOptions,
        progress: Progress = silent,
        task: str | None = None,
    ) -> None:
        self.target, self.golden_set, self.options = target, golden_set, options
        self.progress = progress
        self.route = options.route or golden_set.route or golden.DEFAULT_ROUTE
        self.prompt = options.prompt or golden_set.prompt
        self.run_id = new_request_id()
        self.task = task or f"eval-{self.run_id}"
        self.calls = 0  # requests sent (cases and judge calls): each one a trace
        self._traced_version: str | None = None
        self.client = httpx.Client(base_url=f"{target.url}/v1", timeout=REQUEST_TIMEOUT_S)

    def run(self) -> RunResult:
        started = utc_now()
        with self.client:
            results = self.evaluate(list(enumerate(self.golden_set.cases(), start=1)))
        return self._conclude(started, results)

    def evaluate(self, numbered: list[tuple[int, Case]]) -> list[CaseResult]:
        """Each (number, case) sent, its trace's numbers read, its asserts checked."""
        steps = _Steps(self.progress, 2 * len(numbered) + 1)
        count = len(numbered)
        answers = [
            steps.after(self._send(case), f"case {n}/{count} answered")
            for n, (_, case) in enumerate(numbered, 1)
        ]
        answers = steps.after(self._with_trace_numbers(answers), "traces read")
        return [
            steps.after(
                CaseResult(
                    number, _describe(case, number), answer, self._check(case, answer), case.threshold
                ),
                f"case {n}/{count} checked",
            )
            for n, ((number, case), answer) in enumerate(zip(numbered, answers, strict=True), start=1)
        ]

    def _conclude(self, started: datetime, results: list[CaseResult]) -> RunResult:
        name = str(self.golden_set.name)
        prompt_name, prompt_version = self._prompt_used(results)
        baseline = golden.baseline_of(self.target.rows(golden.last_passing_query(name, prompt_name)))
        threshold = self.options.gate if self.options.gate is not None else self.golden_set.threshold
        passed = sum(result.passed for result in results)
        score = passed / len(results)
        verdict = golden.gate(score, threshold, baseline)
        run = EvalRun(
            run_id=self.run_id,
            golden_set=name,
            prompt_name=prompt_name,
            prompt_version=prompt_version,
            route=self.route,
            started_at=started,
            finished_at=utc_now(),
            cases=len(results),
            passed=passed,
            score=score,
            gate_passed=verdict.passed,
            actor=self.options.actor,
            report={
                "threshold": threshold,
                "baseline": None
                if baseline is None
                else {
                    "run_id": baseline.run_id,
                    "score": baseline.score,
                    "prompt_version": baseline.prompt_version,
                },
                "gate_reasons": verdict.reasons,
                "cases": [result.as_json() for result in results],
            },
        )
        self.target.store(run)
        return RunResult(run, results, verdict, threshold, baseline)

    def _prompt_used(self, results: list[CaseResult]) -> tuple[str | None, str | None]:
        """The prompt as the gateway resolved it (a bare name is the pinned version)."""
        if self.prompt is None:
            return None, None
        name, _, version = self.prompt.partition("@")
        return name, self._traced_version or version or None

    # -- requests -----------------------------------------------------------------------

    def _headers(self, parent: str | None = None) -> dict[str, str]:
        headers = {
            "X-Fleetdeck-Workflow": self.golden_set.workflow,
            "X-Fleetdeck-Task": self.task,
        }
        if self.target.key:
            headers["Authorization"] = f"Bearer {self.target.key}"
        if parent:
            headers["X-Fleetdeck-Parent"] = parent
        return headers

    def body(self, case: Case) -> dict[str, Any]:
        """The case's request; the prompt is the gateway's to apply (X-Fleetdeck-Prompt)."""
        body: dict[str, Any] = {**case.options, "model": self.route, "messages": _messages(case)}
        if case.vars:
            body["metadata"] = {name: str(value) for name, value in case.vars.items()}
        return body

    def prompt_headers(self) -> dict[str, str]:
        return {"X-Fleetdeck-Prompt": self.prompt} if self.prompt else {}

    def _send(self, case: Case) -> Answer:
        body = self.body(case)
        headers = {**self._headers(), **self.prompt_headers()}
        self.calls += 1
        try:
            response = self.client.post("/chat/completions", content=orjson.dumps(body), headers=headers)
        except httpx.HTTPError as exc:
            raise EvalRunError(f"the gateway at {self.target.url} did not answer: {exc}") from None
        request_id = response.headers.get("X-Fleetdeck-Request-Id")
        if response.status_code != 200:
            message, code = _error_of(response)
            if code is not None and code.startswith("prompt_"):
                raise EvalRunError(message)
            return Answer(None, response.status_code, request_id, f"{code or 'error'}: {message}")
        return Answer(_answer_text(response.json()), 200, request_id)

    def _with_trace_numbers(self, answers: list[Answer]) -> list[Answer]:
        """Cost and latency as the gateway recorded them (the recorder stores traces within a second)."""
        ids = [a.request_id for a in answers if a.request_id]
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + TRACE_WAIT_S
        while ids and len(found) < len(set(ids)) and time.monotonic() < deadline:
            request = {"name": "golden_case_traces", "params": {"request_ids": ",".join(ids)}}
            found = {row["request_id"]: row for row in self.target.rows(request)}
            if len(found) < len(set(ids)):
                time.sleep(0.2)
        versions = [row["prompt_version"] for row in found.values() if row.get("prompt_version")]
        self._traced_version = versions[0] if versions else None
        return [
            Answer(
                a.text,
                a.http_status,
                a.request_id,
                a.error,
                cost_usd=(found.get(a.request_id or "") or {}).get("cost_usd"),
                latency_ms=(found.get(a.request_id or "") or {}).get("latency_ms"),
                tokens=_tokens(found.get(a.request_id or "")),
            )
            for a in answers
        ]

    def _check(self, case: Case, answer: Answer) -> list[AssertResult]:
        return [check(assertion, answer, self._judge_for(answer)) for assertion in case.asserts]

    def _judge_for(self, answer: Answer) -> Callable[[str, str], tuple[bool, str]]:
        def judge(rubric: str, output: str) -> tuple[bool, str]:
            body = {
                "model": self.golden_set.judge,
                "temperature": 0,
                "max_tokens": 160,
                "messages": [
                    {"role": "system", "content": JUDGE_INSTRUCTIONS},
                    {"role": "user", "content": f"Rubric: {rubric}\n\nAnswer:\n{output}"},
                ],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "grade", "schema": GRADE_SCHEMA},
                },
            }
            self.calls += 1
            try:
                response = self.client.post(
                    "/chat/completions", content=orjson.dumps(body), headers=self._headers(answer.request_id)
                )
            except httpx.HTTPError as exc:
                return False, f"the judge {self.golden_set.judge} did not answer: {exc}"
            if response.status_code != 200:
                return False, f"the judge {self.golden_set.judge} failed: {_error_of(response)[0]}"
            try:
                grade = orjson.loads(_answer_text(response.json()) or "")
                return bool(grade["pass"]), str(grade.get("reason") or "")
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return False, "the judge's answer is not a grade"

        return judge


class _Steps:
    """Counts a run's steps as they finish, telling `progress` after each."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0
        progress(Step(0, total, "sending the cases"))

    def after(self, value: T, name: str) -> T:
        self.done += 1
        self.progress(Step(self.done, self.total, name))
        return value


def _tokens(row: dict[str, Any] | None) -> int | None:
    if not row or row.get("input_tokens") is None:
        return None
    return int(row["input_tokens"] or 0) + int(row.get("output_tokens") or 0)


def _messages(case: Case) -> list[dict[str, Any]]:
    if case.messages is not None:
        return case.messages
    text = PLACEHOLDER.sub(lambda match: str(case.vars.get(match.group(1), match.group(0))), str(case.input))
    return [{"role": "user", "content": text}]


def _describe(case: Case, number: int) -> str:
    if case.description:
        return case.description
    text = case.input if case.input is not None else str((case.messages or [{}])[-1].get("content"))
    return text.replace("\n", " ")[:60] or f"case {number}"


def _answer_text(body: Any) -> str | None:
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _error_of(response: httpx.Response) -> tuple[str, str | None]:
    try:
        error = response.json().get("error") or {}
        return str(error.get("message") or response.text), error.get("code")
    except ValueError:
        return response.text[:200], None


def _store(fleetdeck: instance.Fleetdeck, run: EvalRun) -> None:
    """The run into the store, as `/_admin/eval_runs` keeps it (golden.answer)."""
    fleetdeck.ask("eval_runs", run.as_request())


def write_report(result: RunResult, path: Path) -> None:
    path.write_bytes(orjson.dumps(result.run.as_request(), option=orjson.OPT_INDENT_2))
