"""Golden sets: the YAML file, the gate, and the stored runs.

A golden set is YAML in the spirit of promptfoo:

    name: support-faq                 # default: the file's stem
    description: …
    route: route:general              # what answers (a model or route:<intent>); --route wins
    prompt: support_faq               # a registry prompt, name or name@version; --prompt wins
    threshold: 0.75                   # the gate: the share of cases that must pass
    judge: local/smollm2-135m         # who grades llm-rubric asserts
    defaultTest: {vars: …, options: …, assert: […]}   # merged into every test
    tests:
      - description: …
        vars: {company: Acme}         # fill the prompt's {{placeholders}} (sent as metadata) and the input's
        input: What is the support email?        # the user message; or `messages: […]`
        options: {max_tokens: 60, temperature: 0} # more request fields
        threshold: 0.5                # share of the asserts' weight that must pass (default: all)
        assert:
          - {type: icontains, value: help@acme.example}

A run passes its gate when its pass rate reaches the threshold (file and/or --gate) and
is not below the last passing run of the same golden set and prompt name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from console.clock import new_request_id
from console.errors import Invalid
from console.guards import schema as schema_guard
from console.store.audit import AuditEvent
from console.store.db import Database
from console.store.recorder import Recorder
from console.store.trace import Eval

ASSERT_TYPES = (
    "equals",
    "contains",
    "icontains",
    "regex",
    "is-json",
    "json-schema",
    "llm-rubric",
    "similar",
    "cost",
    "latency",
)
DEFAULT_ROUTE = "route:general"
DEFAULT_JUDGE = "local/smollm2-135m"
SIMILAR_THRESHOLD = 0.75
SCORE_EPSILON = 1e-9


class GoldenSetError(ValueError):
    """A golden-set file that cannot be run; the message names the file and the problem."""


class Assertion(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: str
    value: Any = None
    threshold: float | None = None
    weight: float = Field(default=1.0, ge=0)

    @field_validator("type")
    @classmethod
    def _known(cls, kind: str) -> str:
        if kind.removeprefix("not-") not in ASSERT_TYPES:
            raise ValueError(f"unknown assert type {kind!r}; use one of {', '.join(ASSERT_TYPES)} (or not-…)")
        return kind

    @model_validator(mode="after")
    def _complete(self) -> Assertion:
        kind = self.base_type
        needs_value = kind in (
            "equals",
            "contains",
            "icontains",
            "regex",
            "json-schema",
            "llm-rubric",
            "similar",
        )
        if needs_value and self.value in (None, ""):
            raise ValueError(f"assert {self.type!r} needs a value")
        if kind == "regex":
            try:
                re.compile(str(self.value))
            except re.error as exc:
                raise ValueError(
                    f"assert {self.type!r}: {self.value!r} is not a regular expression ({exc})"
                ) from None
        if kind in ("cost", "latency") and self.threshold is None:
            raise ValueError(f"assert {self.type!r} needs a threshold ({'USD' if kind == 'cost' else 'ms'})")
        if kind in ("json-schema", "is-json") and self.value is not None:
            if not isinstance(self.value, dict):
                raise ValueError(f"assert {self.type!r}: the value is a JSON schema (a mapping)")
            schema_guard.check_schema(self.value)
        return self

    @property
    def base_type(self) -> str:
        return self.type.removeprefix("not-")

    @property
    def negated(self) -> bool:
        return self.type.startswith("not-")


class CaseDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    vars: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    asserts: list[Assertion] = Field(default_factory=list, alias="assert")
    threshold: float | None = Field(default=None, ge=0, le=1)


class Case(CaseDefaults):
    description: str | None = None
    input: str | None = None
    messages: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)  # where a harvested case came from; not sent

    @model_validator(mode="after")
    def _has_input(self) -> Case:
        if (self.input is None) == (self.messages is None):
            raise ValueError("give the case either `input` (the user message) or `messages`")
        return self


class GoldenSet(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = None
    description: str | None = None
    route: str | None = None
    prompt: str | None = None
    threshold: float | None = Field(default=None, ge=0, le=1)
    judge: str = DEFAULT_JUDGE
    workflow: str = "fleetdeck-eval"
    default_test: CaseDefaults = Field(default_factory=CaseDefaults, alias="defaultTest")
    tests: list[Case] = Field(min_length=1)

    def cases(self) -> list[Case]:
        """The tests with defaultTest merged in (the test's own fields win; asserts add up)."""
        base = self.default_test
        return [
            case.model_copy(
                update={
                    "vars": {**base.vars, **case.vars},
                    "options": {**base.options, **case.options},
                    "asserts": [*base.asserts, *case.asserts],
                    "threshold": case.threshold if case.threshold is not None else base.threshold,
                }
            )
            for case in self.tests
        ]


def load(path: Path) -> GoldenSet:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GoldenSetError(f"{path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise GoldenSetError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise GoldenSetError(f"{path}: expected a mapping with `tests:` at the top level")
    try:
        golden = GoldenSet.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'file'}: {error['msg']}" for error in exc.errors()
        )
        raise GoldenSetError(f"{path}: {problems}") from None
    if golden.name is None:
        golden = golden.model_copy(update={"name": path.stem})
    return golden


class _GoldenDumper(yaml.SafeDumper):
    """Plain YAML for people to curate: no anchors, multi-line text as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_GoldenDumper.add_representer(str, _text)


def dump(golden: Mapping[str, Any], path: Path) -> None:
    text = yaml.dump(dict(golden), Dumper=_GoldenDumper, sort_keys=False, allow_unicode=True, width=100)
    path.write_text(text, "utf-8")


# -- the gate ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Baseline:
    """The last passing run of the same golden set and prompt name."""

    run_id: str
    score: float
    prompt_version: str | None
    started_at: datetime


@dataclass(frozen=True, slots=True)
class Gate:
    passed: bool
    reasons: list[str]


def gate(score: float, threshold: float | None, baseline: Baseline | None) -> Gate:
    reasons = []
    if threshold is not None and score + SCORE_EPSILON < threshold:
        reasons.append(f"pass rate {score:.0%} is below the gate {threshold:.0%}")
    if baseline is not None and score + SCORE_EPSILON < baseline.score:
        version = f" ({baseline.prompt_version})" if baseline.prompt_version else ""
        last = f"the last passing run {baseline.run_id}{version}: {baseline.score:.0%}"
        reasons.append(f"pass rate {score:.0%} is below {last}")
    return Gate(not reasons, reasons)


def baseline_of(rows: list[dict[str, Any]]) -> Baseline | None:
    if not rows:
        return None
    row = rows[0]
    return Baseline(row["run_id"], float(row["score"]), row["prompt_version"], row["started_at"])


# -- stored runs --------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class EvalRun:
    """One run of a golden set, as `eval_runs` keeps it (the report holds every case)."""

    golden_set: str
    started_at: datetime
    finished_at: datetime
    cases: int
    passed: int
    score: float
    gate_passed: bool
    report: dict[str, Any]
    prompt_name: str | None = None
    prompt_version: str | None = None
    route: str | None = None
    run_id: str = field(default_factory=new_request_id)
    actor: str = "cli"

    def row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "golden_set": self.golden_set,
            "prompt_name": self.prompt_name,
            "prompt_version": self.prompt_version,
            "route": self.route,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "cases": self.cases,
            "passed": self.passed,
            "score": self.score,
            "gate_passed": self.gate_passed,
            "report": orjson.dumps(self.report).decode(),
        }

    def as_request(self) -> dict[str, Any]:
        """What the admin API's `/_admin/eval_runs` takes."""
        row = self.row()
        return {
            **row,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "actor": self.actor,
        }


def store_run(db: Database, recorder: Recorder, run: EvalRun) -> None:
    """The run into eval_runs, one golden verdict per case into evals, and an `eval.run` audit entry."""
    row = run.row()
    columns = ", ".join(row)
    db.cursor().execute(
        f"INSERT INTO eval_runs ({columns}) VALUES ({', '.join('?' for _ in row)})", list(row.values())
    )
    for case in run.report.get("cases", ()):
        if case.get("request_id"):
            recorder.record_eval(
                Eval(
                    eval_id=new_request_id(),
                    request_id=case["request_id"],
                    evaluator=f"golden:{run.golden_set}",
                    rubric=case.get("description"),
                    component="answer",
                    verdict="correct" if case["passed"] else "incorrect",
                    score=case["score"],
                    rationale="; ".join(a["reason"] for a in case["asserts"] if not a["passed"])[:1000]
                    or None,
                )
            )
    prompt = f"{run.prompt_name}@{run.prompt_version}" if run.prompt_name else None
    recorder.record_audit(
        AuditEvent(
            actor=run.actor,
            actor_kind="human",
            action="eval.run",
            subject=f"golden:{run.golden_set}",
            payload={
                "run_id": run.run_id,
                "prompt": prompt,
                "route": run.route,
                "cases": run.cases,
                "passed": run.passed,
                "score": round(run.score, 4),
                "gate_passed": run.gate_passed,
            },
        )
    )


def answer(db: Database, recorder: Recorder, request: Mapping[str, Any]) -> dict[str, Any]:
    """The admin API's `/_admin/eval_runs`: store a run made by a CLI against this instance."""
    try:
        run = EvalRun(
            run_id=str(request["run_id"]),
            golden_set=str(request["golden_set"]),
            prompt_name=request.get("prompt_name"),
            prompt_version=request.get("prompt_version"),
            route=request.get("route"),
            started_at=datetime.fromisoformat(str(request["started_at"])),
            finished_at=datetime.fromisoformat(str(request["finished_at"])),
            cases=int(request["cases"]),
            passed=int(request["passed"]),
            score=float(request["score"]),
            gate_passed=bool(request["gate_passed"]),
            report=orjson.loads(request["report"])
            if isinstance(request["report"], str)
            else request["report"],
            actor=str(request.get("actor") or "admin-api"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Invalid(f"not an eval run: {exc}", code="eval_run_refused") from None
    store_run(db, recorder, run)
    return {"run_id": run.run_id}


def last_passing_query(golden_set: str, prompt_name: str | None) -> dict[str, Any]:
    return {"name": "golden_last_pass", "params": {"golden_set": golden_set, "prompt_name": prompt_name}}
