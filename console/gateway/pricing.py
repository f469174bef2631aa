"""What a call cost: policy prices first, then genai-prices; local calls by compute time.

genai-prices takes about 0.2 ms a call, too much for the hot path, so each model's
prices per million tokens are read from it once and kept (measured on a short call, so a
model with tiered prices above long contexts is priced at its base tier). That treats
every model as linearly priced.

Input tokens are priced by kind, at genai-prices' own rates: uncached, read from the
provider's prompt cache, written to it (Anthropic's cache writes cost more than plain
input). `input_tokens` counts all three, as OpenAI's `prompt_tokens` does, so cached
tokens are priced once, at their rate, never also as plain input. Reasoning tokens are
part of the output tokens and priced at the model's reasoning rate (its output rate
when it has none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from console.providers.base import Usage

MILLION = 1_000_000
PROBE = 1_000  # tokens per probe: below every long-context tier


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None

    def cost(self, usage: Usage) -> float:
        read = usage.cache_read_tokens if self.cache_read is not None else 0
        written = usage.cache_write_tokens if self.cache_write is not None else 0
        fresh = max(usage.input_tokens - read - written, 0)
        reasoning = min(usage.reasoning_tokens, usage.output_tokens) if self.reasoning is not None else 0
        total = (
            fresh * self.input
            + read * (self.cache_read or 0.0)
            + written * (self.cache_write or 0.0)
            + (usage.output_tokens - reasoning) * self.output
            + reasoning * (self.reasoning or 0.0)
        )
        return total / MILLION

    def worst_input(self) -> float:
        """The dearest rate an input token can be billed at (a cache write may cost more)."""
        return max(self.input, self.cache_write or 0.0)


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
        prices = self._overrides.get(f"{provider}/{model}") or self._from_catalogue(kind, model)
        if prices is None:
            return None
        dearest = ModelPrices(prices.worst_input(), max(prices.output, prices.reasoning or 0.0))
        return dearest.cost(usage_bound)

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
    def per_million(**usage: int) -> float:
        price = calc_price(PriceUsage(**usage), model, provider_id=provider_id).total_price
        return float(price) * (MILLION // PROBE)

    try:
        return ModelPrices(
            input=per_million(input_tokens=PROBE),
            output=per_million(output_tokens=PROBE),
            cache_read=per_million(input_tokens=PROBE, cache_read_tokens=PROBE),
            cache_write=per_million(input_tokens=PROBE, cache_write_tokens=PROBE),
            reasoning=per_million(output_tokens=PROBE, output_reasoning_tokens=PROBE),
        )
    except LookupError:
        return None
