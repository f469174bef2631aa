"""`fleetdeck tui --demo`: a traffic generator that sends a realistic mix through the gateway.

The sample company's four features call their routes (support triage and replies,
internal doc summaries, invoice extraction, the refund agent) with short prompts, a
few streamed, a few asking for JSON, some repeated (so the cache has something to do),
and report task outcomes now and then. Requests go one at a time at a human-ish pace:
the local model on a small CPU sets the real rate, and the console must stay smooth.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from ulid import ULID

log = logging.getLogger("fleetdeck.demo")


@dataclass(frozen=True)
class Feature:
    workflow: str
    intent: str
    prompts: tuple[str, ...]
    max_tokens: int
    stream_share: float = 0.3
    json_share: float = 0.0


FEATURES = (
    Feature(
        "support_triage",
        "triage_ticket",
        (
            "Classify this ticket: 'My invoice shows the wrong VAT number.'",
            "Classify this ticket: 'The app crashes when I upload a photo.'",
            "Classify this ticket: 'How do I change my delivery address?'",
        ),
        max_tokens=12,
        json_share=0.3,
    ),
    Feature(
        "support_triage",
        "draft_support_reply",
        (
            "Draft a short, friendly reply: the customer's parcel is two days late.",
            "Draft a short reply explaining how to reset a password.",
        ),
        max_tokens=32,
        stream_share=0.7,
    ),
    Feature(
        "internal_doc_summaries",
        "summarize_internal_docs",
        (
            "Summarize in one sentence: the on-call rotation changes to weekly shifts from Monday.",
            "Summarize in one sentence: expense reports are due on the 5th of each month.",
        ),
        max_tokens=24,
    ),
    Feature(
        "invoice_parsing",
        "extract_invoice",
        ("Extract the total from: 'Invoice 4411, total due EUR 1,280.00 by 30 Nov.'",),
        max_tokens=16,
        json_share=0.8,
    ),
    Feature(
        "refund_agent",
        "refund_agent",
        ("A customer asks for a refund of order 8812 (damaged item). What is the next step?",),
        max_tokens=24,
    ),
)
OUTCOMES = ("resolved", "failed", "abandoned")
OUTCOME_WEIGHTS = (0.8, 0.12, 0.08)


class DemoTraffic:
    """Sends requests to `base_url` on a thread of its own until stopped."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        pause_s: tuple[float, float] = (0.3, 1.5),
        seed: int | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.pause_s = pause_s
        self.sent = 0
        self.failed = 0
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_error = on_error

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fleetdeck-demo", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=120) as client:
            while not self._stop.wait(self._rng.uniform(*self.pause_s)):
                try:
                    self.send_one(client)
                except httpx.HTTPError as exc:
                    self.failed += 1
                    if self._on_error is not None and self.failed == 1:
                        self._on_error(f"demo traffic: {exc}")

    def send_one(self, client: httpx.Client) -> int:
        """One task's call (and, sometimes, its outcome); returns the HTTP status."""
        feature = self._rng.choice(FEATURES)
        task = f"tsk_{ULID()}"
        body = self.request_body(feature)
        headers = {
            "x-fleetdeck-workflow": feature.workflow,
            "x-fleetdeck-task": task,
            "x-fleetdeck-step": "1",
        }
        if body.get("stream"):
            with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
                for _ in response.iter_bytes():
                    if self._stop.is_set():
                        break
                status = response.status_code
        else:
            status = client.post("/v1/chat/completions", json=body, headers=headers).status_code
        self.sent += 1
        if status == 200 and self._rng.random() < 0.7:
            self._report_outcome(client, task, feature.workflow)
        return status

    def request_body(self, feature: Feature) -> dict[str, object]:
        body: dict[str, object] = {
            "model": f"route:{feature.intent}",
            "messages": [{"role": "user", "content": self._rng.choice(feature.prompts)}],
            "max_tokens": feature.max_tokens,
            "temperature": 0.2,
        }
        if self._rng.random() < feature.stream_share:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if self._rng.random() < feature.json_share:
            body["response_format"] = {"type": "json_object"}
        return body

    def _report_outcome(self, client: httpx.Client, task: str, workflow: str) -> None:
        status = self._rng.choices(OUTCOMES, OUTCOME_WEIGHTS)[0]
        client.post("/v1/outcomes", json={"task_id": task, "workflow_id": workflow, "status": status})
