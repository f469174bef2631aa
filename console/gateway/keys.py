"""Virtual keys per environment: the registry the gateway authenticates requests against.

A virtual key (`fd-<env>-…`) is shown once, when created; the store keeps only its
HMAC-SHA256 under a pepper that never enters the database (the pepper is a local
secret: console/secrets.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from console.gateway.openai_api import ApiError

ENVIRONMENTS = ("dev", "staging", "prod")
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class VirtualKey:
    key_id: str
    name: str
    environment: str
    daily_cap: float | None = None
    monthly_cap: float | None = None
    routes: tuple[str, ...] | None = None  # None: every route its environment may use
    revoked: bool = False
    requests_per_minute: int | None = None  # None: the policy's per-key default
    tokens_per_minute: int | None = None
    concurrent: int | None = None

    def may_use(self, route: str | None) -> bool:
        return self.routes is None or (route is not None and route in self.routes)


def new_key_token(environment: str) -> str:
    return f"fd-{environment}-{secrets.token_urlsafe(32)}"


def key_hash(token: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), token.encode(), hashlib.sha256).hexdigest()


def check_key_name(name: str) -> str:
    if not KEY_NAME.match(name):
        raise ValueError(
            f"key name {name!r}: use 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_environment(environment: str) -> str:
    if environment not in ENVIRONMENTS:
        raise ValueError(f"environment {environment!r}: use one of {', '.join(ENVIRONMENTS)}")
    return environment


class KeyRegistry:
    """The keys the gateway accepts, by hash; answers every request without the database."""

    def __init__(self, pepper: str, keys: Iterable[tuple[str, VirtualKey]] = ()) -> None:
        self._pepper = pepper
        self._by_hash: dict[str, VirtualKey] = dict(keys)
        self._changing = threading.Lock()  # admin calls change keys from a worker thread

    def authenticate(self, headers: Mapping[str, str]) -> VirtualKey:
        """The key of `Authorization: Bearer …` or `x-api-key` (Anthropic's SDKs send that);
        a 401 envelope when missing, unknown or revoked."""
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        token = token or headers.get("x-api-key", "").strip()
        if not token:
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>' "
                "(create one with `fleetdeck keys create`)",
                code="invalid_api_key",
            )
        key = self._by_hash.get(key_hash(token, self._pepper))
        if key is None:
            raise ApiError(401, "invalid API key", code="invalid_api_key")
        if key.revoked:
            raise ApiError(401, f"API key {key.name!r} was revoked", code="invalid_api_key")
        return key

    def hash_of(self, token: str) -> str:
        return key_hash(token, self._pepper)

    def accepts(self, token: str) -> bool:
        key = self._by_hash.get(self.hash_of(token))
        return key is not None and not key.revoked

    def add(self, hashed: str, key: VirtualKey) -> None:
        with self._changing:
            self._by_hash = {**self._by_hash, hashed: key}

    def revoke(self, name: str) -> None:
        with self._changing:
            self._by_hash = {
                hashed: dataclasses.replace(key, revoked=True) if key.name == name else key
                for hashed, key in self._by_hash.items()
            }

    def merge(self, keys: Mapping[str, VirtualKey]) -> set[str]:
        """Take keys (by hash) another replica created or revoked; the hashes that changed here."""
        with self._changing:
            changed = {hashed: key for hashed, key in keys.items() if self._by_hash.get(hashed) != key}
            if changed:
                self._by_hash = {**self._by_hash, **changed}
            return set(changed)

    def known(self) -> list[VirtualKey]:
        return sorted(self._by_hash.values(), key=lambda key: key.name)
