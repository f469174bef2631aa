"""What a call cost: policy prices first, then genai-prices; local calls by compute time.

genai-prices takes about 0.2 ms a call, too much for the hot path, so each model's
prices per million tokens are read from it once and kept. That treats every model as
linearly priced; the few with tiered prices above long contexts are priced at their
base tier (noted in the trace's price_source).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from console.providers.base import Usage

MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float | None = None

    def cost(self, usage: Usage) -> float:
        cached = usage.cache_read_tokens if self.cache_read is not None else 0
        fresh = usage.input_tokens - cached
        total = fresh * self.input + usage.output_tokens * self.output + cached * (self.cache_read or 0.0)
        return total / MILLION


@dataclass(frozen=True, slots=True)
class Price:
    cost_usd: float | None
    source: str  # policy | genai-prices | local-compute | unpriced


class PriceBook:
    def __init__(
        self, overrides: Mapping[str, ModelPrices], local_cost_per_hour: Mapping[str, float]
    ) -> None:
        """`overrides` by `provider/model`; `local_cost_per_hour` by local provider name."""
        self._overrides = dict(overrides)
        self._local = dict(local_cost_per_hour)
        self._catalogue: dict[tuple[str, str], ModelPrices | None] = {}

    def price(
        self,
        provider: str,
        kind: str,
        model: str,
        usage: Usage,
        compute_s: float | None,
        answered: str | None = None,
    ) -> Price:
        """`model` is the target asked for; `answered` the model the response names, priced first."""
        override = self._overrides.get(f"{provider}/{model}")
        if override is not None:
            return Price(override.cost(usage), "policy")
        if kind == "local":
            rate = self._local.get(provider)
            if rate is None or compute_s is None:
                return Price(None, "unpriced")
            return Price(compute_s * rate / 3600, "local-compute")
        prices = (answered and self._from_catalogue(kind, answered)) or self._from_catalogue(kind, model)
        if prices is None:
            return Price(None, "unpriced")
        return Price(prices.cost(usage), "genai-prices")

    def worst_case(
        self, provider: str, kind: str, model: str, usage_bound: Usage, seconds_bound: float
    ) -> float | None:
        """The most a call can cost: token bounds at list prices, local calls by their deadline."""
        if kind == "local" and f"{provider}/{model}" not in self._overrides:
            rate = self._local.get(provider)
            return None if rate is None else seconds_bound * rate / 3600
        return self.price(provider, kind, model, usage_bound, None).cost_usd

    def is_priced(self, provider: str, kind: str, model: str) -> bool:
        if f"{provider}/{model}" in self._overrides or kind == "local":
            return True
        return self._from_catalogue(kind, model) is not None

    def _from_catalogue(self, kind: str, model: str) -> ModelPrices | None:
        key = (kind, model)
        if key not in self._catalogue:
            self._catalogue[key] = _lookup(model, "anthropic" if kind == "anthropic" else None)
        return self._catalogue[key]


def _lookup(model: str, provider_id: str | None) -> ModelPrices | None:
    def per_million(usage: PriceUsage) -> float:
        return float(calc_price(usage, model, provider_id=provider_id).total_price)

    try:
        input_price = per_million(PriceUsage(input_tokens=MILLION))
        output_price = per_million(PriceUsage(output_tokens=MILLION))
        cache_read = per_million(PriceUsage(input_tokens=MILLION, cache_read_tokens=MILLION))
    except LookupError:
        return None
    return ModelPrices(input_price, output_price, cache_read)
