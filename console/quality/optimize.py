"""Prompt optimization against a golden set: a reflective search (GEPA-style), under a budget.

The loop knows no HTTP: it is handed a `Port` that evaluates a template on cases, asks the
optimizer model for edits, bounds what each step may cost and says what was spent (the
command's port sends everything through the gateway, console/commands/prompts_optimize.py).

    train, held_out = split(len(cases), holdout, seed)
    search = Search(port, SearchLimits(rounds, candidates, budget_usd), train, held_out)
    outcome = search.run(current_template, "v3")

Each round takes the front's best member on the train split as the parent, shows the
optimizer the train cases it fails (never the held-out ones), and scores each proposed
edit on every case. The front is the Pareto set of train pass rate (higher) against cost
and tokens (lower). The search stops at the rounds, when the next step's worst case would
pass the budget, when the parent passes every train case, or when a round improves on no
parent, or when a step fails (`StepFailed`). The best candidate is the one with the most
held-out passes (then train, then cost); it is adopted only when it beats the current
version on a split and loses on neither: a candidate that learned the train cases but
fails more held-out ones is not.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from console.progress import Progress, Step, silent

BASELINE = "current"


@dataclass(frozen=True, slots=True)
class CaseOutcome:
    """One case of one candidate: the verdict, and what the optimizer is shown of a failure."""

    number: int
    passed: bool
    cost_usd: float = 0.0
    tokens: int = 0
    input: str = ""
    asserts: str = ""
    answer: str | None = None
    why: str = ""


@dataclass(frozen=True, slots=True)
class Proposal:
    template: str
    reasoning: str


@dataclass(frozen=True, slots=True)
class Candidate:
    label: str  # `current` for the version searched from, else r<round>c<n>
    template: str
    parent: str | None = None
    round: int = 0
    reasoning: str = ""


@dataclass(frozen=True, slots=True)
class Scored:
    candidate: Candidate
    train: tuple[CaseOutcome, ...]
    held_out: tuple[CaseOutcome, ...]

    @property
    def train_passed(self) -> int:
        return sum(case.passed for case in self.train)

    @property
    def held_out_passed(self) -> int:
        return sum(case.passed for case in self.held_out)

    @property
    def train_rate(self) -> float:
        return self.train_passed / len(self.train) if self.train else 1.0

    @property
    def held_out_rate(self) -> float | None:
        return self.held_out_passed / len(self.held_out) if self.held_out else None

    @property
    def cost_usd(self) -> float:
        return sum(case.cost_usd for case in (*self.train, *self.held_out))

    @property
    def tokens(self) -> int:
        return sum(case.tokens for case in (*self.train, *self.held_out))

    def failures(self) -> list[CaseOutcome]:
        """The train cases it fails: what the optimizer is shown."""
        return [case for case in self.train if not case.passed]


class Port(Protocol):
    """What the search needs from the world; every cost is in USD."""

    def evaluate(self, template: str, cases: Sequence[int]) -> list[CaseOutcome]: ...

    def evaluation_bound(self, template: str, cases: Sequence[int]) -> float:
        """The most evaluating `template` on `cases` may cost (calls and judge calls)."""
        ...

    def propose(self, parent: Scored, count: int) -> list[Proposal]: ...

    def proposal_bound(self, parent: Scored, count: int) -> float: ...

    def spent(self) -> float:
        """What the search's calls cost so far, as the gateway recorded them."""
        ...


@dataclass(frozen=True, slots=True)
class SearchLimits:
    rounds: int = 3
    candidates: int = 3
    budget_usd: float = 1.0


@dataclass(frozen=True, slots=True)
class Stop:
    kind: str  # rounds | budget | solved | no-improvement | error
    why: str


@dataclass
class Outcome:
    scored: list[Scored]
    front: list[Scored]
    baseline: Scored | None
    best: Scored | None  # adopted: better than the baseline on held-out without losing ground
    stop: Stop
    spent_usd: float
    rounds: int = 0
    events: list[str] = field(default_factory=list)


def split(count: int, holdout: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Case numbers (1-based) of the train and held-out splits, shuffled by `seed`; with two
    cases or more each split has one at least."""
    numbers = list(range(1, count + 1))
    random.Random(seed).shuffle(numbers)
    held = round(count * holdout)
    held = min(max(held, 1), count - 1) if count >= 2 else 0
    return sorted(numbers[held:]), sorted(numbers[:held])


def dominates(first: Scored, second: Scored) -> bool:
    """At least as good on every axis (train pass rate up, cost and tokens down), better on one."""
    a = (first.train_rate, -first.cost_usd, -first.tokens)
    b = (second.train_rate, -second.cost_usd, -second.tokens)
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b


def pareto_front(scored: Sequence[Scored]) -> list[Scored]:
    """The members no other dominates, in the order they came."""
    return [one for one in scored if not any(dominates(other, one) for other in scored)]


def ranking(scored: Scored) -> tuple[float, float, float, int]:
    held = scored.held_out_rate if scored.held_out_rate is not None else scored.train_rate
    return held, scored.train_rate, -scored.cost_usd, -scored.tokens


def adoptable(candidate: Scored, baseline: Scored) -> bool:
    """Better than the baseline on the held-out split or on train, worse on neither."""
    if candidate.candidate.label == baseline.candidate.label:
        return False
    held, base_held = candidate.held_out_rate, baseline.held_out_rate
    if held is not None and base_held is not None and held < base_held:
        return False
    if candidate.train_rate < baseline.train_rate:
        return False
    return ranking(candidate)[:2] > ranking(baseline)[:2]


def train_ranking(scored: Scored) -> tuple[float, float, int]:
    """How a parent is chosen: the held-out split plays no part in the search itself."""
    return scored.train_rate, -scored.cost_usd, -scored.tokens


class BudgetSpent(Exception):
    """The next step's worst case does not fit in what is left of the budget."""


class StepFailed(Exception):
    """A step could not be made (the optimizer refused by the gateway, …): the search stops
    there, and what it has scored so far still counts."""


class Search:
    def __init__(
        self,
        port: Port,
        limits: SearchLimits,
        train: Sequence[int],
        held_out: Sequence[int],
        progress: Progress = silent,
    ) -> None:
        self.port, self.limits, self.progress = port, limits, progress
        self.train, self.held_out = list(train), list(held_out)
        self.scored: list[Scored] = []
        self.events: list[str] = []
        self._seen: set[str] = set()
        self._steps, self._total = 0, 1 + limits.rounds * limits.candidates

    def run(self, template: str, label: str = BASELINE) -> Outcome:
        try:
            baseline = self._score(Candidate(label, template))
        except BudgetSpent as spent:
            return self._outcome(None, Stop("budget", str(spent)), 0)
        stop, rounds = None, 0
        for rounds in range(1, self.limits.rounds + 1):
            try:
                stop = self._round(rounds)
            except BudgetSpent as spent:
                stop = Stop("budget", str(spent))
            except StepFailed as failed:
                stop = Stop("error", str(failed))
            if stop is not None:
                break
        return self._outcome(baseline, stop or Stop("rounds", f"{rounds} round(s) run"), rounds)

    def _round(self, number: int) -> Stop | None:
        """One round; why to stop, or None to go on."""
        parent = max(pareto_front(self.scored), key=train_ranking)
        if not parent.failures():
            return Stop("solved", f"{parent.candidate.label} passes every train case")
        self._pay(self.port.proposal_bound(parent, self.limits.candidates), "asking the optimizer")
        asking = f"round {number}: asking the optimizer to edit {parent.candidate.label}"
        self.progress(Step(min(self._steps, self._total), self._total, asking))
        proposals = self.port.propose(parent, self.limits.candidates)[: self.limits.candidates]
        if not proposals:
            self.events.append(f"round {number}: the optimizer proposed no usable candidate")
        improved = False
        for n, proposal in enumerate(proposals, start=1):
            if proposal.template.strip() in self._seen:
                self.events.append(f"round {number}: candidate {n} repeats a template already scored")
                continue
            made = Candidate(
                f"r{number}c{n}", proposal.template, parent.candidate.label, number, proposal.reasoning
            )
            improved |= self._score(made).train_rate > parent.train_rate
        if improved:
            return None
        return Stop("no-improvement", f"no candidate of round {number} improved on {parent.candidate.label}")

    def _score(self, candidate: Candidate) -> Scored:
        cases = [*self.train, *self.held_out]
        self._pay(self.port.evaluation_bound(candidate.template, cases), f"scoring {candidate.label}")
        outcomes = {case.number: case for case in self.port.evaluate(candidate.template, cases)}
        scored = Scored(
            candidate,
            tuple(outcomes[n] for n in self.train if n in outcomes),
            tuple(outcomes[n] for n in self.held_out if n in outcomes),
        )
        self.scored.append(scored)
        self._seen.add(candidate.template.strip())
        self._steps += 1
        held = (
            ""
            if scored.held_out_rate is None
            else f", held-out {scored.held_out_passed}/{len(scored.held_out)}"
        )
        name = f"{candidate.label}: train {scored.train_passed}/{len(scored.train)}{held}"
        self.progress(Step(min(self._steps, self._total), self._total, name))
        return scored

    def _pay(self, bound: float, what: str) -> None:
        spent = self.port.spent()
        if spent + bound > self.limits.budget_usd + 1e-12:
            raise BudgetSpent(
                f"{what} may cost up to ${bound:.6f}; ${spent:.6f} spent of ${self.limits.budget_usd:.6f}"
            )

    def _outcome(self, baseline: Scored | None, stop: Stop, rounds: int) -> Outcome:
        front = pareto_front(self.scored)
        best = None
        if baseline is not None:
            contenders = [s for s in self.scored if adoptable(s, baseline)]
            best = max(contenders, key=ranking) if contenders else None
        return Outcome(self.scored, front, baseline, best, stop, self.port.spent(), rounds, self.events)


def worst_case(
    port: Port, template: str, longest: str, cases: Sequence[int], limits: SearchLimits, parent: Scored
) -> dict[str, float]:
    """What a whole search may cost before it runs: the baseline's evaluation, then every round's
    optimizer call and `candidates` evaluations of a template as long as `longest`."""
    baseline = port.evaluation_bound(template, cases)
    proposal = port.proposal_bound(parent, limits.candidates)
    candidate = port.evaluation_bound(longest, cases)
    rounds = limits.rounds * (proposal + limits.candidates * candidate)
    return {
        "baseline": baseline,
        "optimizer_call": proposal,
        "candidate": candidate,
        "total": baseline + rounds,
    }
