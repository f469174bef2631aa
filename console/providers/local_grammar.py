"""The grammar a local call makes llama.cpp follow, checked before generation.

A JSON schema in `response_format`, or the parameters of the tool a `tool_choice` names,
becomes a GBNF grammar (llama-cpp-python converts it as it will during generation). llama.cpp
refuses some grammars (e.g. a `maxLength` in the thousands repeats a rule past its limit) by
returning no sampler, and llama-cpp-python then crashes the process on it. So the grammar is
parsed here first, the way llama.cpp will, and a refused one is the caller's 400.
"""

from __future__ import annotations

import json
from typing import Any

from console.providers.base import ErrorType, ProviderError

CHECKED_KEPT = 256  # schemas already parsed, by their JSON text


class GrammarCheck:
    """Parses each schema's grammar once per model, on the generation thread."""

    def __init__(self) -> None:
        self._verdicts: dict[str, str | None] = {}  # schema JSON → the problem, or None

    def check(self, llm: Any, args: dict[str, Any]) -> None:
        for where, schema in _schemas(args):
            text = json.dumps(schema, sort_keys=True)
            if text not in self._verdicts:
                if len(self._verdicts) >= CHECKED_KEPT:
                    self._verdicts.pop(next(iter(self._verdicts)))
                self._verdicts[text] = _refusal(llm, text)
            if (problem := self._verdicts[text]) is not None:
                raise ProviderError(ErrorType.bad_request, f"{where}: {problem}", status=400)


def _schemas(args: dict[str, Any]) -> list[tuple[str, Any]]:
    found = []
    fmt = args.get("response_format")
    if isinstance(fmt, dict) and "schema" in fmt:
        found.append(("response_format.json_schema.schema", fmt["schema"]))
    choice = args.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        for tool in args.get("tools") or ():
            if tool["function"]["name"] == name and "parameters" in tool["function"]:
                found.append((f"tools[{name!r}].function.parameters", tool["function"]["parameters"]))
    return found


def _refusal(llm: Any, schema: str) -> str | None:
    import llama_cpp
    from llama_cpp import llama_grammar

    try:
        grammar = llama_grammar.json_schema_to_gbnf(schema)
    except Exception:  # llama-cpp-python falls back to any JSON: so may we
        return None
    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode(), b"root")
    if not sampler:
        return (
            "the local model's grammar engine (llama.cpp) cannot follow this schema: a bound "
            "such as maxLength, maxItems or minItems in the thousands repeats a rule past its "
            "limit; lower or drop the bounds"
        )
    llama_cpp.llama_sampler_free(sampler)
    return None
