"""Where spans and metrics go, resolved once at start from the policy and the environment.

The policy's `otlp.endpoint` (a collector's OTLP/HTTP base URL) wins; without it the
standard variables apply: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / _METRICS_ENDPOINT /
_LOGS_ENDPOINT as they are, else OTEL_EXPORTER_OTLP_ENDPOINT with /v1/traces, /v1/metrics
and /v1/logs added (logs carry the judge's verdicts as events).
OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_* and
OTEL_METRIC_EXPORT_INTERVAL are read by the SDK itself; OTEL_SDK_DISABLED=true turns
export off. A header given as `{secret: NAME}` is read from keyring (console.secrets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from console.errors import Invalid
from console.policy import OtlpConfig, SecretHeader
from console.secrets import provider_secret, secret_env_name


@dataclass(frozen=True)
class ExportConfig:
    traces_endpoint: str
    metrics_endpoint: str | None  # None: no metrics (only a traces endpoint was named)
    logs_endpoint: str | None = None  # the judge's verdicts as gen_ai.evaluation.result events
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may hold secrets: never logged
    capture_content: bool = False
    queue_size: int = 2048
    timeout_s: float | None = None  # None: the SDK's (OTEL_EXPORTER_OTLP_TIMEOUT, else 10 s)
    metrics_interval_s: float | None = None  # None: the SDK's (OTEL_METRIC_EXPORT_INTERVAL, else 60 s)

    @property
    def shown_endpoint(self) -> str:
        """The traces endpoint without credentials, for /healthz."""
        parts = urlsplit(self.traces_endpoint)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def export_config(config: OtlpConfig, env: Mapping[str, str] = os.environ) -> ExportConfig | None:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    traces, metrics, logs = _endpoints(config, env)
    if not traces:
        return None
    chosen = config.model_fields_set
    return ExportConfig(
        traces_endpoint=traces,
        metrics_endpoint=metrics,
        logs_endpoint=logs,
        headers=_headers(config),
        capture_content=config.capture_content,
        queue_size=config.queue_size,
        timeout_s=config.timeout_s if "timeout_s" in chosen else None,
        metrics_interval_s=config.metrics_interval_s if "metrics_interval_s" in chosen else None,
    )


SIGNALS = ("traces", "metrics", "logs")


def _endpoints(config: OtlpConfig, env: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """Each signal's endpoint: the policy's base URL, else its own variable, else the base variable."""
    if config.endpoint:
        base, own = config.endpoint, ["", "", ""]
    else:
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        own = [env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "").strip() for signal in SIGNALS]
    traces, metrics, logs = (
        mine or (_signal(base, signal) if base else None) for mine, signal in zip(own, SIGNALS, strict=True)
    )
    return traces, metrics, logs


def _signal(base: str, signal: str) -> str:
    return f"{base.rstrip('/')}/v1/{signal}"


def _headers(config: OtlpConfig) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in config.headers.items():
        if isinstance(value, SecretHeader):
            secret = provider_secret(value.secret)
            if secret is None:
                raise Invalid(
                    f"otlp.headers.{name}: no secret {value.secret!r} in keyring "
                    f"(or {secret_env_name(value.secret)} in the environment)"
                )
            headers[name] = secret
        else:
            headers[name] = value
    return headers
