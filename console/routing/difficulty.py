"""The difficulty of a request: how likely the small tier is to get it wrong.

A logistic model over features that both a trace and a live request have, so the score
fitted offline (console.routing.calibrate) is the score the router computes:

- log_input_tokens: log(1 + prompt tokens); live, the prompt's text bytes / 4;
- step: the call's step in its task (X-Fleetdeck-Step), 1 when unknown;
- tools: tools involved; offline, the tool calls the answer made (traces do not keep the
  tools a request offered), live, the tools the request offers;
- wants_json: a JSON answer was asked for; offline, `schema_valid` is set.

The route is fixed per model, so the intent is not a feature; the sample traces keep no
payloads, so no text embedding is either.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import orjson

from console.store import queries

log = logging.getLogger("fleetdeck.routing")

FEATURES = ("log_input_tokens", "step", "tools", "wants_json")
BYTES_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class DifficultyModel:
    """Standardised logistic regression; `threshold` on its score sends a call to the large tier."""

    route: str
    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    threshold: float

    def score(self, features: Sequence[float]) -> float:
        z = self.bias + sum(
            w * (x - m) / s for w, x, m, s in zip(self.weights, features, self.mean, self.scale, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "weights": list(self.weights),
            "bias": self.bias,
            "mean": list(self.mean),
            "scale": list(self.scale),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DifficultyModel:
        fitted = orjson.loads(row["model"]) if isinstance(row["model"], str) else row["model"]
        if list(fitted["features"]) != list(FEATURES):
            raise ValueError(f"route {row['route']}: fitted on other features {fitted['features']}")
        return cls(
            route=str(row["route"]),
            weights=tuple(float(w) for w in fitted["weights"]),
            bias=float(fitted["bias"]),
            mean=tuple(float(m) for m in fitted["mean"]),
            scale=tuple(float(s) for s in fitted["scale"]),
            threshold=float(row["threshold"]),
        )


def trace_features(input_tokens: int | None, step: int | None, tools: int, wants_json: bool) -> list[float]:
    return [math.log1p(max(input_tokens or 0, 0)), float(step or 1), float(tools), float(wants_json)]


def request_features(body: Mapping[str, Any], step: int | None) -> list[float]:
    text_bytes = sum(len(orjson.dumps(body.get(name))) for name in ("messages", "prompt") if name in body)
    tools = len(body.get("tools") or ()) if body.get("tool_choice") != "none" else 0
    fmt = body.get("response_format")
    wants_json = isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")
    return trace_features(text_bytes // BYTES_PER_TOKEN, step, tools, wants_json)


def load_models(cursor: duckdb.DuckDBPyConnection) -> dict[str, DifficultyModel]:
    """The newest calibrated model of each route (queries/routing_thresholds.sql)."""
    models = {}
    for row in queries.run(cursor, "routing_thresholds", {}).to_pylist():
        try:
            models[str(row["route"])] = DifficultyModel.from_row(row)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("routing threshold of %s not used: %s", row.get("route"), exc)
    return models
