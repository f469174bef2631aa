"""A keyring backend keeping secrets in a JSON file, for tests on machines without a keyring.

Select it in a child process with
`PYTHON_KEYRING_BACKEND=fakes.file_keyring.FileKeyring`, `PYTHONPATH=<tests dir>` and
`FLEETDECK_TEST_KEYRING=<file>`. It speaks the keyring API, so Fleetdeck's code under
test is the same code that talks to the Secret Service or the macOS Keychain.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    @property
    def _path(self) -> Path:
        return Path(os.environ["FLEETDECK_TEST_KEYRING"])

    def _load(self) -> dict[str, str]:
        try:
            stored: dict[str, str] = json.loads(self._path.read_text())
        except FileNotFoundError:
            return {}
        return stored

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        stored = self._load()
        stored[f"{service}/{username}"] = password
        self._path.write_text(json.dumps(stored))

    def delete_password(self, service: str, username: str) -> None:
        stored = self._load()
        if stored.pop(f"{service}/{username}", None) is None:
            raise PasswordDeleteError(username)
        self._path.write_text(json.dumps(stored))
