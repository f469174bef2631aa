"""The secrets Fleetdeck holds, and where each is looked up.

Provider API keys live in keyring (service `fleetdeck`), with `FLEETDECK_SECRET_<NAME>`
as the fallback for headless machines. Secrets Fleetdeck makes for itself (the virtual
keys' pepper, the audit signing key, the console's dev key) go to keyring too, or, where
no keyring backend keeps them, to a 0600 file in the data dir (`local-secrets.json`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import keyring
import orjson
from keyring.errors import KeyringError

SERVICE = "fleetdeck"
PEPPER_NAME = "virtual-key-pepper"
AUDIT_KEY_NAME = "audit-signing-key"
LOCAL_SECRETS_FILE = "local-secrets.json"


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
