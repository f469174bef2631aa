"""Fake upstreams for tests: real HTTP servers on 127.0.0.1 with injectable faults.

`fakes.openai_upstream.FakeOpenAI` (OpenAI-compatible, the full fault API) and
`fakes.anthropic_upstream.FakeAnthropic` (the Messages API); both documented in
their module docstrings. Tests import them as `from fakes.openai_upstream import …`
(pytest puts `tests/` on sys.path).
"""
