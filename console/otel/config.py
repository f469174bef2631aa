"""Where spans and metrics go, resolved once at start from the policy and the environment.

The policy's `otlp.endpoint` (a collector's OTLP/HTTP base URL) wins; without it the
standard variables apply: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / _METRICS_ENDPOINT as
they are, else OTEL_EXPORTER_OTLP_ENDPOINT with /v1/traces and /v1/metrics added.
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
    headers: dict[str, str] = field(repr=False)  # may hold secrets: never logged
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
    traces, metrics = _endpoints(config, env)
    if not traces:
        return None
    chosen = config.model_fields_set
    return ExportConfig(
        traces_endpoint=traces,
        metrics_endpoint=metrics,
        headers=_headers(config),
        capture_content=config.capture_content,
        queue_size=config.queue_size,
        timeout_s=config.timeout_s if "timeout_s" in chosen else None,
        metrics_interval_s=config.metrics_interval_s if "metrics_interval_s" in chosen else None,
    )


def _endpoints(config: OtlpConfig, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    if config.endpoint:
        return _signal(config.endpoint, "traces"), _signal(config.endpoint, "metrics")
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip() or (base and _signal(base, "traces"))
    metrics = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip() or (
        base and _signal(base, "metrics")
    )
    return traces or None, metrics or None


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
