"""Providers: local llama.cpp, OpenAI-compatible HTTP APIs and Anthropic, behind one contract."""
