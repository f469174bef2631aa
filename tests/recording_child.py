"""Records traces (or audit events) as fast as it can and prints each id once it is acknowledged.

Run by test_recorder.py and test_audit.py, which kill it with SIGKILL at a random moment.
"""

from __future__ import annotations

import sys
from pathlib import Path

from console.engine import Engine
from console.settings import Settings
from console.store.audit import AuditEvent
from console.store.trace import Payload, Trace


def main(data_dir: str, what: str = "traces") -> None:
    engine = Engine(Settings(data_dir=Path(data_dir), audit_checkpoint_every=25))
    engine.start_recorder()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    if what == "audit":
        record_audit_events(engine)
    step = 0
    while True:
        step += 1
        trace = Trace(workflow_id="kill-test", step=step, attempt_log=[{"attempt": 1}], cost_usd=0.001)
        payload = Payload(payload_ref=trace.request_id, request_id=trace.request_id, request={"n": step})
        trace.payload_ref = payload.payload_ref
        engine.recorder.record(trace, payload)
        out.write(trace.request_id + "\n")
        out.flush()


def record_audit_events(engine: Engine) -> None:
    step = 0
    while True:
        step += 1
        event = AuditEvent(
            actor="kill-test", actor_kind="system", action="test.burst", payload={"step": step}
        )
        engine.recorder.record_audit(event)
        sys.stdout.write(event.event_id + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(*sys.argv[1:])
