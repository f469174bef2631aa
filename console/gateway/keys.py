"""Provider secrets: keyring first (service `fleetdeck`), then `FLEETDECK_SECRET_<NAME>`.

Virtual keys per environment arrive with the cost-controls issue.
"""

from __future__ import annotations

import os

import keyring
from keyring.errors import KeyringError

SERVICE = "fleetdeck"


def secret_env_name(name: str) -> str:
    return "FLEETDECK_SECRET_" + "".join(c if c.isalnum() else "_" for c in name.upper())


def provider_secret(name: str | None) -> str | None:
    """The secret stored under `name`, or None. Never logged, never traced."""
    if not name:
        return None
    try:
        stored = keyring.get_password(SERVICE, name)
    except (KeyringError, RuntimeError):
        stored = None  # no usable keyring backend on a headless box
    return stored or os.environ.get(secret_env_name(name))
