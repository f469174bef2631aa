"""The secrets Fleetdeck holds, and where each is looked up.

Provider API keys live in keyring (service `fleetdeck`), with `FLEETDECK_SECRET_<NAME>`
as the fallback for headless machines. Secrets Fleetdeck makes for itself (the virtual
keys' pepper, the audit signing key, the console's dev key, the evaluator's and the
CLI's eval keys) are looked up in keyring, then in `FLEETDECK_SECRET_<NAME>`, then in a
0600 file in the user's config dir (`$XDG_CONFIG_HOME/fleetdeck/secrets.json`, the
folder 0700), and are made and kept in keyring, or in that file where no keyring backend
keeps them. Never in the data dir: a data dir copied, backed up or exported carries no
secret.

The file holds one entry per data dir, found by the random id in `<data dir>/data-dir-id`
(not a secret: it only says which entry is this data dir's), so two data dirs on one box
keep their own secrets and a data dir that moves keeps its entry. Earlier versions kept
the file in the data dir (`local-secrets.json`); the first look-up moves it into the
config dir and deletes it, and says so in the log.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keyring
import orjson
from keyring.errors import KeyringError

from console.settings import Settings

SERVICE = "fleetdeck"
PEPPER_NAME = "virtual-key-pepper"
AUDIT_KEY_NAME = "audit-signing-key"
SECRETS_FILE = "secrets.json"
DATA_DIR_ID_FILE = "data-dir-id"
LEGACY_SECRETS_FILE = "local-secrets.json"  # in the data dir, before secrets moved out of it
_LOCK_FILE = "secrets.lock"

log = logging.getLogger("fleetdeck.secrets")


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


# --------------------------------------------------------------------------- Fleetdeck's own secrets


def read_local_secret(name: str, settings: Settings) -> str | None:
    migrate_data_dir_secrets(settings)
    return _keyring_get(name) or os.environ.get(secret_env_name(name)) or _entry(settings).get(name)


def local_secret(name: str, settings: Settings, make: Callable[[], str] | None = None) -> str:
    """A secret Fleetdeck makes for itself (with `make`): created on first use, then the same."""
    found = read_local_secret(name, settings)
    if found:
        return found
    value = make() if make is not None else secrets.token_urlsafe(32)
    store_local_secret(name, value, settings)
    return value


def store_local_secret(name: str, value: str, settings: Settings) -> None:
    with contextlib.suppress(KeyringError, RuntimeError):
        keyring.set_password(SERVICE, name, value)
    if _keyring_get(name) == value:  # some backends accept a secret and keep nothing
        return
    with _locked(settings):
        _write_entry(settings, {**_entry(settings), name: value})


def secrets_file(settings: Settings) -> Path:
    """The fallback file; refuses a config dir inside the data dir."""
    config_dir = settings.config_dir.expanduser().resolve()
    data_dir = settings.data_dir.expanduser().resolve()
    if config_dir.is_relative_to(data_dir):
        raise SecretStoreUnavailable(
            f"the config dir {config_dir} is inside the data dir {data_dir}, and secrets never live in "
            "the data dir: point FLEETDECK_CONFIG_DIR (or XDG_CONFIG_HOME) somewhere else"
        )
    return config_dir / SECRETS_FILE


def migrate_data_dir_secrets(settings: Settings) -> None:
    """Move a `local-secrets.json` left in the data dir by an earlier version into the config dir."""
    legacy = settings.data_dir / LEGACY_SECRETS_FILE
    if not legacy.exists():
        return
    with _locked(settings):
        try:
            found = _string_map(orjson.loads(legacy.read_bytes()))
        except FileNotFoundError:
            return  # another process moved it meanwhile
        except (OSError, orjson.JSONDecodeError) as exc:
            log.warning("cannot read %s (%s); left where it is", legacy, exc)
            return
        entry = _entry(settings)
        kept = sorted(name for name, value in found.items() if entry.get(name, value) != value)
        if kept:
            log.warning(
                "%s and %s disagree on %s; the config dir's value stays", legacy, secrets_file(settings), kept
            )
        _write_entry(settings, {**found, **entry})
        legacy.unlink()
    log.warning(
        "moved %d secret(s) (%s) from the data dir's %s to %s; the data dir holds no secret now",
        len(found),
        ", ".join(sorted(found)),
        legacy,
        secrets_file(settings),
    )


# --------------------------------------------------------------------------- the file


def _entry(settings: Settings) -> dict[str, str]:
    """This data dir's secrets in the file ({} without a file, an entry or a data dir id)."""
    data_dir_id = _data_dir_id(settings.data_dir, create=False)
    if data_dir_id is None:
        return {}
    entry = _read_file(settings).get(data_dir_id)
    return _string_map(entry.get("secrets")) if isinstance(entry, dict) else {}


def _write_entry(settings: Settings, values: dict[str, str]) -> None:
    """Replace this data dir's entry (atomically: a temp file 0600, then rename); under the lock."""
    path = secrets_file(settings)
    data_dir_id = _data_dir_id(settings.data_dir, create=True)
    assert data_dir_id is not None
    stored = _read_file(settings)
    stored[data_dir_id] = {"data_dir": str(settings.data_dir.resolve()), "secrets": values}
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps({"data_dirs": stored}, option=orjson.OPT_INDENT_2))
        f.flush()
        os.fsync(f.fileno())
    temp.replace(path)


def _read_file(settings: Settings) -> dict[str, Any]:
    try:
        found = orjson.loads(secrets_file(settings).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    data_dirs = found.get("data_dirs") if isinstance(found, dict) else None
    return dict(data_dirs) if isinstance(data_dirs, dict) else {}


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """One writer at a time across processes (an instance and a CLI command may both write)."""
    folder = _config_dir(settings)
    fd = os.open(folder / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _config_dir(settings: Settings) -> Path:
    """The folder of the file, made 0700 (and tightened to 0700 when others could read it)."""
    folder = secrets_file(settings).parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077:
        folder.chmod(0o700)
    return folder


def data_dir_id(data_dir: Path) -> str:
    """The data dir's own random id (made on first use): which store is which, wherever it moves."""
    found = _data_dir_id(data_dir, create=True)
    assert found is not None
    return found


def _data_dir_id(data_dir: Path, *, create: bool) -> str | None:
    path = data_dir / DATA_DIR_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_text(encoding="ascii").strip() or None
    if not create:
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(secrets.token_hex(16) + "\n", encoding="ascii")
    with contextlib.suppress(FileExistsError):  # a link appears whole; the first one made wins
        os.link(temp, path)
    temp.unlink()
    return path.read_text(encoding="ascii").strip()


def _string_map(found: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _keyring_get(name: str) -> str | None:
    try:
        return keyring.get_password(SERVICE, name)
    except (KeyringError, RuntimeError):
        return None  # no usable keyring backend on a headless box
