"""OTLP export: every recorded call as an OpenTelemetry span after the GenAI semantic
conventions, and the conventions' client metrics, sent to any OTLP/HTTP collector.

`config.py` resolves where to (the policy's `otlp:` section, then the standard
OTEL_EXPORTER_OTLP_* variables), `spans.py` says what a trace is as a span, and
`exporter.py` sends spans and metrics off the request path. Off by default: with no
endpoint, nothing is built and the SDK is not even imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from console.otel.config import export_config
from console.otel.spans import Server, server_of
from console.policy import OtlpConfig
from console.providers.base import Provider

if TYPE_CHECKING:
    from console.otel.exporter import OtlpExport


def start_export(config: OtlpConfig, providers: Mapping[str, Provider]) -> OtlpExport | None:
    """The running export for this policy, or None when no endpoint is configured."""
    resolved = export_config(config)
    if resolved is None:
        return None
    from console.otel.exporter import OtlpExport  # the SDK only when exporting

    servers: dict[str, Server] = {name: server_of(provider) for name, provider in providers.items()}
    return OtlpExport(resolved, servers)
