"""Where Fleetdeck keeps its data and how it binds; every field has an env override.

Fields read `FLEETDECK_<NAME>` from the environment (for instance
`FLEETDECK_DATA_DIR`); command-line options win over both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_RETENTION_FLOOR_DAYS = 183


def default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "fleetdeck"


def default_config_dir() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "fleetdeck"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEETDECK_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    # Where secrets.json lives when no keyring keeps Fleetdeck's own secrets (console/secrets.py);
    # never inside the data dir.
    config_dir: Path = Field(default_factory=default_config_dir)
    host: str = "127.0.0.1"
    port: int = 8787
    policy_file: Path | None = None
    # Traces are acknowledged once written to the spool; this bounds what a power cut
    # (not a crash: the kernel keeps written pages) can take. 0 turns fsync off.
    spool_fsync_interval_s: float = Field(default=1.0, ge=0)
    # Each flush is one DuckDB statement with a fixed cost (10–30 ms here): 0.25 s keeps a
    # trace visible well within a second without paying that cost ten times a second.
    recorder_flush_interval_s: float = Field(default=0.25, gt=0)
    recorder_batch_traces: int = Field(default=1000, gt=0)
    local_cost_per_hour: float = Field(default=0.40, ge=0)
    # The local model's hardware, where the policy's local provider leaves them unset
    # (FLEETDECK_LOCAL_N_GPU_LAYERS, …); unset here too: llama.cpp on every layer when it finds
    # a GPU device (-1), else 0; the model spread over every GPU; half the CPUs; 2048 tokens.
    local_n_gpu_layers: int | None = Field(default=None, ge=-1)
    local_main_gpu: int | None = Field(default=None, ge=0)
    local_n_threads: int | None = Field(default=None, ge=1)
    local_n_ctx: int | None = Field(default=None, ge=1)
    # The audit chain's head is signed every this many entries, or this often.
    audit_checkpoint_every: int = Field(default=1000, gt=0)
    audit_checkpoint_interval_s: float = Field(default=300.0, gt=0)
    # Retention (console/store/retention.py), in days. Payloads (redacted request and
    # response bodies, and the cached answers made of them) go first; traces with their
    # evals and outcomes later; audit entries keep their hashes for good and lose their
    # payloads past audit retention. Traces and audit entries are the logs the EU AI Act
    # (Art. 19) asks deployers to keep for six months: neither goes below 183 days.
    payload_retention_days: int = Field(default=30, ge=1)
    trace_retention_days: int = Field(default=400)
    audit_retention_days: int = Field(default=400)
    # While serving, retention is applied this often (seconds); 0 turns it off.
    retention_interval_s: float = Field(default=3600.0, ge=0)
    # A streamed answer whose tool call waits for a human's approval sends an SSE comment
    # this often (seconds), so the client and any proxy between keep the stream open.
    stream_keep_alive_s: float = Field(default=15.0, gt=0)
    # Requests need a virtual key (Authorization: Bearer …); off only on a trusted single-user box.
    auth_required: bool = True
    # Drift alerts are also POSTed as JSON here (FLEETDECK_DRIFT_WEBHOOK_URL); none by default.
    drift_webhook_url: str | None = None
    # While serving, drift runs this often (seconds); 0 turns the monitor off.
    drift_interval_s: float = Field(default=3600.0, ge=0)

    # The Parquet lake (console/lake/, docs/lake.md): with a path (FLEETDECK_LAKE), this instance
    # copies its traces, evals, outcomes and audit log there this often (seconds) while it
    # serves, and once more when it stops. None: no lake.
    lake: Path | None = None
    lake_export_interval_s: float = Field(default=30.0, gt=0)
    # Read commands and the console over a lake instead of this data dir, read-only
    # (FLEETDECK_LAKE_ATTACH, or `fleetdeck lake attach PATH` / `--lake PATH`).
    lake_attach: Path | None = None

    # Cluster mode (console/cluster/): replicas share keys, route stops, the budget ledger,
    # rate limits, prompts, held tool calls and breaker ejections through this PostgreSQL
    # (FLEETDECK_CLUSTER=postgresql://host/db); None: one box.
    cluster: str | None = None
    cluster_schema: str = "fleetdeck"  # the schema holding the cluster's tables
    # An uncapped call while PostgreSQL is unreachable: served (it needs no ledger) or refused.
    cluster_uncapped: Literal["serve", "refuse"] = "serve"
    # How long a call waits for PostgreSQL before it is refused (seconds): bounded, so an
    # outage costs a capped call this much latency at most, never a hung request.
    cluster_wait_s: float = Field(default=2.0, gt=0)
    # A reservation lapses this long after it was taken; unset: the route's total timeout
    # plus a margin, so a replica killed mid-call leaks nothing past it.
    cluster_lease_s: float | None = Field(default=None, gt=0)
    # How often a replica syncs what it shares (keys, stops, prompts, held calls, ejections)
    # and says it is alive (seconds).
    cluster_sync_interval_s: float = Field(default=0.25, gt=0)

    @field_validator("trace_retention_days", "audit_retention_days")
    @classmethod
    def _at_least_six_months(cls, days: int, info: ValidationInfo) -> int:
        if days < LOG_RETENTION_FLOOR_DAYS:
            env = f"FLEETDECK_{(info.field_name or '').upper()}"
            raise ValueError(
                f"{info.field_name} ({env}) is {days} days, but traces and audit entries are kept for "
                f"at least {LOG_RETENTION_FLOOR_DAYS} days (six months: EU AI Act Art. 19); "
                f"set {LOG_RETENTION_FLOOR_DAYS} or more"
            )
        return days

    @property
    def db_path(self) -> Path:
        return self.data_dir / "fleetdeck.duckdb"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def audit_checkpoint_file(self) -> Path:
        """Signed checkpoints, outside the database."""
        return self.data_dir / "audit" / "checkpoints.jsonl"


def load_settings(data_dir: Path | None = None) -> Settings:
    """Settings from the environment, with `--data-dir` applied when given."""
    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings
