"""Records traces as fast as it can and prints each request_id once record() returns.

Run by test_recorder.py, which kills it with SIGKILL at a random moment.
"""

from __future__ import annotations

import sys
from pathlib import Path

from console.engine import Engine
from console.settings import Settings
from console.store.trace import Payload, Trace


def main(data_dir: str) -> None:
    engine = Engine(Settings(data_dir=Path(data_dir)))
    engine.start_recorder()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    step = 0
    while True:
        step += 1
        trace = Trace(workflow_id="kill-test", step=step, attempt_log=[{"attempt": 1}], cost_usd=0.001)
        payload = Payload(payload_ref=trace.request_id, request_id=trace.request_id, request={"n": step})
        trace.payload_ref = payload.payload_ref
        engine.recorder.record(trace, payload)
        out.write(trace.request_id + "\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1])
