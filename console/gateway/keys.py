"""Virtual keys per environment, and the secrets Fleetdeck holds.

A virtual key (`fd-<env>-…`) is shown once, when created; the store keeps only its
HMAC-SHA256 under a pepper that never enters the database. Provider API keys live in
keyring (service `fleetdeck`), with `FLEETDECK_SECRET_<NAME>` as the fallback for
headless machines. Secrets Fleetdeck makes for itself (the pepper, the console's dev
key) go to keyring too, or, where no keyring backend exists, to a 0600 file in the
data dir.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import keyring
import orjson
from keyring.errors import KeyringError

from console.gateway.openai_api import ApiError

SERVICE = "fleetdeck"
ENVIRONMENTS = ("dev", "staging", "prod")
PEPPER_NAME = "virtual-key-pepper"
AUDIT_KEY_NAME = "audit-signing-key"
LOCAL_SECRETS_FILE = "local-secrets.json"
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
log = logging.getLogger("fleetdeck.keys")


# -- provider secrets ---------------------------------------------------------------


def secret_env_name(name: str) -> str:
    return "FLEETDECK_SECRET_" + "".join(c if c.isalnum() else "_" for c in name.upper())


def provider_secret(name: str | None) -> str | None:
    """The secret stored under `name`, or None. Never logged, never traced."""
    if not name:
        return None
    return _keyring_get(name) or os.environ.get(secret_env_name(name))


def set_provider_secret(name: str, value: str) -> None:
    """Store a provider's API key in keyring; raises SecretStoreUnavailable without a backend."""
    try:
        keyring.set_password(SERVICE, name, value)
    except (KeyringError, RuntimeError) as exc:
        raise SecretStoreUnavailable(
            f"no usable keyring backend ({type(exc).__name__}); on a headless machine set "
            f"{secret_env_name(name)} in the environment instead"
        ) from None


class SecretStoreUnavailable(Exception):
    pass


def read_local_secret(name: str, data_dir: Path) -> str | None:
    return _keyring_get(name) or os.environ.get(secret_env_name(name)) or _file_secrets(data_dir).get(name)


def local_secret(name: str, data_dir: Path, make: Callable[[], str] | None = None) -> str:
    """A secret Fleetdeck makes for itself (with `make`): created on first use, then the same."""
    found = read_local_secret(name, data_dir)
    if found:
        return found
    value = make() if make is not None else secrets.token_urlsafe(32)
    store_local_secret(name, value, data_dir)
    return value


def store_local_secret(name: str, value: str, data_dir: Path) -> None:
    with contextlib.suppress(KeyringError, RuntimeError):
        keyring.set_password(SERVICE, name, value)
    if _keyring_get(name) == value:  # some backends accept a secret and keep nothing
        return
    stored = _file_secrets(data_dir)
    stored[name] = value
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCAL_SECRETS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(stored))


def _keyring_get(name: str) -> str | None:
    try:
        return keyring.get_password(SERVICE, name)
    except (KeyringError, RuntimeError):
        return None  # no usable keyring backend on a headless box


def _file_secrets(data_dir: Path) -> dict[str, str]:
    try:
        found = orjson.loads((data_dir / LOCAL_SECRETS_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


# -- virtual keys ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VirtualKey:
    key_id: str
    name: str
    environment: str
    daily_cap: float | None = None
    monthly_cap: float | None = None
    routes: tuple[str, ...] | None = None  # None: every route its environment may use
    revoked: bool = False

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
        """The key of `Authorization: Bearer …`; a 401 envelope when missing, unknown or revoked."""
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not token:
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer <key>' "
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

    def known(self) -> list[VirtualKey]:
        return sorted(self._by_hash.values(), key=lambda key: key.name)
