"""Contract handoffs between agents: a typed payload, the traces each field came from, a gate.

A producer submits a payload under a contract of the policy (`handoffs:`) with, for each
field the contract names, the request ids of the calls that produced it. The payload is
checked against the contract's JSON Schema; every cited trace must be stored and belong to
the handoff's task. Then the gate: `none` accepts at once; `approval` holds the handoff in
the approvals queue (beside held tool calls: `fleetdeck approvals approve|deny`) until a
human decides or the deadline refuses it; `judge` asks the judge model whether the payload
meets the contract's rubric. A consumer's call that cites a handoff (X-Fleetdeck-Handoff,
or `handoff` in its metadata) is served only once the handoff is accepted.

Every decision is an audit entry (console/store/handoffs.py reads them back): the payload
in it is redacted, and its digest is kept whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from console.clock import new_request_id
from console.gateway.approvals import ApprovalQueue, HeldCall, new_approval_id
from console.gateway.openai_api import ApiError
from console.guards.body import redact_body
from console.guards.schema import check_document
from console.policy import HandoffContract
from console.store import handoffs as stored
from console.store.audit import AuditEvent
from console.store.db import Database
from console.store.recorder import Recorder

# The judge gate: (model, rubric, payload JSON, task) → the judge's answer text, or None.
AskJudge = Callable[[str, str, str, str], Awaitable[tuple[str, str] | None]]
MAX_CITED = 200  # source traces per handoff
KEPT_WHOLE = 10_000  # handoffs kept whole in memory for GET; older ones answer their state


@dataclass
class Handoff:
    handoff_id: str
    contract: str
    task_id: str
    state: str  # accepted | refused | held
    submitted_by: str
    provenance: dict[str, list[str]]
    payload_sha256: str
    problem: str | None = None
    gate: dict[str, Any] = field(default_factory=dict)

    def doc(self) -> dict[str, Any]:
        return {
            "id": self.handoff_id,
            "object": "handoff",
            "contract": self.contract,
            "task_id": self.task_id,
            "status": self.state,
            "problem": self.problem,
            "provenance": self.provenance,
            "payload_sha256": self.payload_sha256,
            "gate": self.gate,
        }


class Handoffs:
    """The policy's contracts and every handoff's state, kept in memory and in the audit log."""

    def __init__(
        self,
        contracts: Mapping[str, HandoffContract],
        db: Database,
        recorder: Recorder,
        approvals: ApprovalQueue | None,
    ) -> None:
        self.contracts, self._db, self._recorder, self._approvals = dict(contracts), db, recorder, approvals
        self.ask_judge: AskJudge | None = None
        self.judge_model: str | None = None  # the policy's judge, for gates that name none
        self._states = stored.states(db.cursor())  # id → (state, task, contract)
        self._gates: set[asyncio.Task[None]] = set()
        self._submitted: dict[str, Handoff] = {}  # this process's, whole (older ones: their state)
        self._decided: dict[str, asyncio.Event] = {}  # handoffs held here, set once their gate decides
        self._refuse_orphans()

    def _refuse_orphans(self) -> None:
        """Handoffs held when the gateway last stopped: their gate is gone, so they are refused."""
        for handoff_id, (state, task, contract) in list(self._states.items()):
            if state == "held":
                orphan = Handoff(handoff_id, contract or "", task or "", state, "gateway", {}, "")
                why = "the gateway stopped while the handoff was held: submit it again"
                self._decide(orphan, None, "refused", "gateway", "system", why)

    # -- submission --------------------------------------------------------------------

    async def submit(self, doc: Mapping[str, Any], submitted_by: str, task_header: str | None) -> Handoff:
        contract_name, contract = self._contract(doc.get("contract"))
        task = _text(doc.get("task_id") or task_header, "task_id")
        payload = doc.get("payload")
        provenance = _provenance(doc.get("provenance"))
        handoff = Handoff(
            "hof_" + new_request_id().lower(),
            contract_name,
            task,
            "held",
            submitted_by,
            provenance,
            hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest(),
        )
        problem = check_document(payload, contract.payload_schema).error if payload is not None else None
        if payload is None:
            problem = "payload: required (the document handed on)"
        problem = (
            problem or _missing_provenance(contract, provenance) or await self._sources(task, provenance)
        )
        self._keep(handoff)
        if problem is not None:
            return self._refuse(handoff, payload, problem)
        self._gate(handoff, contract, payload)
        return handoff

    def _keep(self, handoff: Handoff) -> None:
        if len(self._submitted) >= KEPT_WHOLE:
            del self._submitted[next(iter(self._submitted))]
        self._submitted[handoff.handoff_id] = handoff

    def _contract(self, name: object) -> tuple[str, HandoffContract]:
        if not isinstance(name, str) or name not in self.contracts:
            known = ", ".join(sorted(self.contracts)) or "none: the policy has no `handoffs:`"
            raise ApiError(
                400,
                f"contract: unknown handoff contract {name!r} (known: {known})",
                param="contract",
                code="unknown_contract",
            )
        return name, self.contracts[name]

    async def _sources(self, task: str, provenance: Mapping[str, list[str]]) -> str | None:
        cited = {request_id for ids in provenance.values() for request_id in ids}
        found = await asyncio.to_thread(self._tasks_of, cited)
        if cited - found.keys():  # the producer's last call may still be on the spool
            await asyncio.to_thread(self._recorder.flush)
            found = await asyncio.to_thread(self._tasks_of, cited)
        for name, ids in provenance.items():
            for request_id in ids:
                if request_id not in found:
                    return f"provenance.{name}: trace {request_id!r} does not exist"
                if found[request_id] != task:
                    return (
                        f"provenance.{name}: trace {request_id!r} belongs to task "
                        f"{found[request_id]!r}, not to this handoff's task {task!r}"
                    )
        return None

    def _tasks_of(self, ids: set[str]) -> dict[str, str | None]:
        cur = self._db.new_cursor()
        try:
            return stored.tasks_of(cur, ids)
        finally:
            cur.close()

    # -- the gate ------------------------------------------------------------------------

    def _gate(self, handoff: Handoff, contract: HandoffContract, payload: object) -> None:
        gate = contract.gate
        handoff.gate = {"kind": gate.kind}
        if gate.kind == "none":
            self._decide(handoff, payload, "accepted", handoff.submitted_by, "key")
            return
        if gate.kind == "approval":
            held = self._held_call(handoff, payload)
            waiting = self._approval(handoff, payload, held, gate.deadline_s)
        else:
            waiting = self._judged(handoff, payload, contract)
        self._decide(handoff, payload, "held", handoff.submitted_by, "key")
        self._decided[handoff.handoff_id] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(waiting)
        self._gates.add(task)
        task.add_done_callback(self._gates.discard)

    def _held_call(self, handoff: Handoff, payload: object) -> HeldCall:
        """The handoff as the approvals queue shows it, beside held tool calls."""
        shown = orjson.dumps(redact_body({"payload": payload})[0]["payload"]).decode()
        held = HeldCall(
            new_approval_id(),
            handoff.handoff_id,
            None,
            f"handoff:{handoff.contract}",
            shown[:2000],
            handoff.submitted_by,
        )
        handoff.gate["approval_id"] = held.approval_id
        return held

    async def _approval(self, handoff: Handoff, payload: object, held: HeldCall, deadline_s: float) -> None:
        if self._approvals is None:
            self._decide(
                handoff, payload, "refused", "gateway", "system", "no approvals queue serves this gateway"
            )
            return
        decision, actor = await self._approvals.hold(held, deadline_s)
        if decision == "approved":
            self._decide(handoff, payload, "accepted", actor, "human")
        else:
            why = "nobody decided before the deadline" if decision == "expired" else f"denied by {actor}"
            self._decide(
                handoff, payload, "refused", actor, "human" if decision == "denied" else "system", why
            )

    async def _judged(self, handoff: Handoff, payload: object, contract: HandoffContract) -> None:
        model = contract.gate.judge or self.judge_model
        if self.ask_judge is None or model is None:
            self._decide(
                handoff, payload, "refused", "gateway", "system", "no judge model serves this gateway"
            )
            return
        text = orjson.dumps(payload).decode()
        answer = await self.ask_judge(model, contract.gate.rubric or "", text, handoff.task_id)
        if answer is None:
            self._decide(handoff, payload, "refused", "judge", "system", "the judge call failed")
            return
        verdict, rationale = answer
        handoff.gate.update({"verdict": verdict, "rationale": rationale, "judge": model})
        state = "accepted" if verdict == "correct" else "refused"
        self._decide(handoff, payload, state, "judge", "system", None if state == "accepted" else rationale)

    # -- decisions ---------------------------------------------------------------------------

    def _refuse(self, handoff: Handoff, payload: object, problem: str) -> Handoff:
        self._decide(handoff, payload, "refused", handoff.submitted_by, "key", problem)
        return handoff

    def _decide(
        self, handoff: Handoff, payload: object, state: str, actor: str, kind: str, problem: str | None = None
    ) -> None:
        handoff.state, handoff.problem = state, problem
        self._states[handoff.handoff_id] = (state, handoff.task_id, handoff.contract)
        if state != "held" and (decided := self._decided.pop(handoff.handoff_id, None)):
            decided.set()
        redacted = redact_body({"payload": payload})[0]["payload"] if payload is not None else None
        entry = {**handoff.doc(), "payload": redacted}
        self._recorder.record_audit(
            AuditEvent(
                actor=actor,
                actor_kind=kind,
                action=f"handoff.{state}",
                subject=handoff.handoff_id,
                payload=entry,
            )
        )

    # -- consumers ---------------------------------------------------------------------------

    def check_cited(self, handoff_id: str, task: str | None, workflow: str | None, request_id: str) -> None:
        """Refuse a consumer's call citing a handoff that is not accepted (or not for it)."""
        state, handoff_task, contract_name = self._states.get(handoff_id, ("unknown", None, None))
        if state != "accepted":
            why = {"unknown": "does not exist", "held": "is still held by its gate"}.get(
                state, f"was {state}"
            )
            raise ApiError(
                409,
                f"handoff {handoff_id!r} {why}: a call may cite only an accepted handoff",
                code="handoff_not_accepted",
            )
        contract = self.contracts.get(contract_name or "")
        if task is not None and handoff_task != task:
            raise ApiError(
                409,
                f"handoff {handoff_id!r} belongs to task {handoff_task!r}, not {task!r}",
                code="handoff_not_accepted",
            )
        if contract is not None and contract.consumer and workflow != contract.consumer:
            raise ApiError(
                409,
                f"handoff {handoff_id!r} is for the workflow {contract.consumer!r}, not {workflow!r}",
                code="handoff_not_accepted",
            )
        self._recorder.record_audit(
            AuditEvent(
                actor="gateway",
                actor_kind="system",
                action="handoff.consumed",
                subject=handoff_id,
                payload={"request_id": request_id, "task_id": task, "workflow": workflow},
            )
        )

    async def read_decided(self, handoff_id: str, wait_s: float) -> Handoff:
        """The handoff once its gate decided, or as it stands after `wait_s` seconds."""
        found = self.read(handoff_id)
        decided = self._decided.get(handoff_id)
        if decided is not None and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(decided.wait(), wait_s)
        return self.read(handoff_id) if found.state == "held" else found

    def read(self, handoff_id: str) -> Handoff:
        """A handoff as submitted here, else what the audit log keeps of it; 404 when unknown."""
        if handoff_id in self._submitted:
            return self._submitted[handoff_id]
        if handoff_id not in self._states:
            raise ApiError(404, f"no handoff {handoff_id!r}", code="handoff_not_found")
        state, task, contract = self._states[handoff_id]
        return Handoff(handoff_id, contract or "", task or "", state, "", {}, "")


def _text(value: object, param: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(
            400,
            f"{param}: required, a non-empty string (or the X-Fleetdeck-Task header)",
            param=param,
            code="invalid_request",
        )
    return value


def _provenance(value: object) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in value.values()
    ):
        raise ApiError(
            400,
            "provenance: expected an object of field name → list of request ids",
            param="provenance",
            code="invalid_request",
        )
    found = {str(name): list(ids) for name, ids in value.items()}
    if sum(len(ids) for ids in found.values()) > MAX_CITED:
        raise ApiError(
            400, f"provenance: at most {MAX_CITED} source traces", param="provenance", code="invalid_request"
        )
    return found


def _missing_provenance(contract: HandoffContract, provenance: Mapping[str, list[str]]) -> str | None:
    for name in contract.provenance:
        if not provenance.get(name):
            return f"provenance.{name}: the contract asks which calls produced this field; none named"
    return None
