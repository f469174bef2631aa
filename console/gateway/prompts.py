"""The prompt registry: templates versioned like code, pins, and applying a template to a request.

A version is named `v1`, `v2`, … in the order it is added, and identified by the sha256 of
its text: adding the same text again adds nothing and answers the version it already has.
Pins are `prompt.pin` audit entries (subject `prompt:<name>@<version>`), so who pinned
what and when is on the hash chain, and the pin in force is the latest entry (read at
start through the named query `prompt_pins`). A request naming a prompt without a
version gets the pinned one, or the latest added when none is pinned.

In cluster mode a version's number is taken in the cluster's PostgreSQL and a pin written
there first (through a `PromptMirror`); every replica's sync job brings the versions it
lacks into its store and follows the cluster's pins (console/cluster/prompts.py).

Applying a template: it becomes the request's first message (role `system`), ahead of
the request's own messages; `{{name}}` placeholders are filled from the request's
`metadata` (the variables used are taken out of it). Only chat requests take a prompt.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from console.clock import utc_now
from console.errors import Invalid
from console.store import queries
from console.store.audit import AuditEvent
from console.store.db import Database
from console.store.recorder import Recorder

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
PROMPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
VERSION_NUMBER = re.compile(r"^v(\d+)$")


class PromptError(Invalid, ValueError):
    """A prompt reference or template that cannot be used; the message names the problem."""

    def __init__(self, message: str, code: str = "prompt_not_found") -> None:
        super().__init__(message, code=code)


@dataclass(frozen=True, slots=True)
class PromptVersion:
    name: str
    version: str
    template: str
    hash: str
    created_at: datetime
    author: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def variables(self) -> list[str]:
        """The placeholders of the template, each once, in order of appearance."""
        return list(dict.fromkeys(PLACEHOLDER.findall(self.template)))

    def render(self, values: Mapping[str, Any]) -> str:
        missing = [name for name in self.variables() if name not in values]
        if missing:
            raise PromptError(
                f"prompt {self.ref} needs the variable(s) {', '.join(missing)}: "
                "send them in the request's metadata",
                code="prompt_variable_missing",
            )
        return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), self.template)


def content_hash(template: str) -> str:
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def version_number(version: str) -> int:
    """3 for `v3`; 0 for a version not named that way."""
    match = VERSION_NUMBER.match(version)
    return int(match.group(1)) if match else 0


def version_row(version: PromptVersion) -> tuple[datetime, str | None]:
    return version.created_at, version.author


def parse_ref(ref: str) -> tuple[str, str | None]:
    """`name@version` or `name` (the pinned version)."""
    name, _, version = ref.strip().partition("@")
    return name, version or None


class PromptMirror(Protocol):
    """Where else versions and pins go: the cluster's PostgreSQL, read by every replica. Each
    raises a DomainError when it cannot, before anything changes here."""

    def prompt_added(
        self, name: str, template: str, digest: str, author: str, floor: int
    ) -> tuple[PromptVersion, bool]:
        """The cluster's version of this text (numbered above `floor`), and whether it is new."""
        ...

    def prompt_pinned(self, name: str, version: str, actor: str) -> None: ...


class PromptRegistry:
    """All versions and pins in memory (they are few); add and pin write through to the store.

    The request path only reads; add and pin (the admin API's worker thread, or the CLI)
    replace the maps whole, so a reader never sees half a change.
    """

    def __init__(
        self,
        db: Database,
        recorder: Recorder,
        versions: list[PromptVersion] | None = None,
        pins: Mapping[str, str] | None = None,
        lineage: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        self._db, self._recorder = db, recorder
        self._versions: dict[str, tuple[PromptVersion, ...]] = {}
        for version in versions or ():
            self._versions[version.name] = (*self._versions.get(version.name, ()), version)
        self._pins = dict(pins or {})
        self._lineage: dict[str, dict[str, Any]] = dict(lineage or {})  # by ref, of optimized versions
        self._lock = threading.Lock()
        self.mirror: PromptMirror | None = None
        self.pinned_here = 0  # pins made through this registry: a sync read before one is stale

    @classmethod
    def open(cls, db: Database, recorder: Recorder) -> PromptRegistry:
        cur = db.cursor()
        rows = queries.run(cur, "prompt_versions", {}).to_pylist()
        pins = {row["name"]: row["version"] for row in queries.run(cur, "prompt_pins", {}).to_pylist()}
        versions = [
            PromptVersion(
                row["name"], row["version"], row["template"], row["hash"], row["created_at"], row["author"]
            )
            for row in rows
        ]
        lineage = {
            f"{row['name']}@{row['version']}": orjson.loads(row["lineage"])
            for row in queries.run(cur, "prompt_lineage", {}).to_pylist()
        }
        return cls(db, recorder, versions, pins, lineage)

    # -- reading ------------------------------------------------------------------------

    def versions(self, name: str) -> tuple[PromptVersion, ...]:
        return self._versions.get(name, ())

    def known(self) -> list[PromptVersion]:
        return [version for versions in self._versions.values() for version in versions]

    def pins(self) -> dict[str, str]:
        return dict(self._pins)

    def pinned(self, name: str) -> str | None:
        return self._pins.get(name)

    def resolve(self, name: str, version: str | None = None) -> PromptVersion:
        """The version asked for; without one, the pinned version, else the latest added."""
        known = self.versions(name)
        if not known:
            raise PromptError(f"unknown prompt {name!r}: add it with `fleetdeck prompts add {name} FILE`")
        wanted = version or self._pins.get(name)
        if wanted is None:
            return known[-1]
        found = next((v for v in known if v.version == wanted), None)
        if found is None:
            listed = ", ".join(v.version for v in known)
            how = "is pinned but is not in the registry" if version is None else "does not exist"
            raise PromptError(f"prompt {name!r} version {wanted!r} {how} (versions: {listed})")
        return found

    def apply(self, name: str, version: str | None, body: dict[str, Any]) -> PromptVersion:
        """Put the rendered template in front of a chat request's messages; returns the version used."""
        prompt = self.resolve(name, version)
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise PromptError(
                f"prompt {prompt.ref}: X-Fleetdeck-Prompt applies to chat completions only",
                code="prompt_not_applicable",
            )
        metadata = body.get("metadata")
        values = metadata if isinstance(metadata, dict) else {}
        system = prompt.render(values)
        for variable in prompt.variables():
            values.pop(variable, None)
        if isinstance(metadata, dict) and not metadata:
            del body["metadata"]
        body["messages"] = [{"role": "system", "content": system}, *messages]
        return prompt

    def listing(self) -> list[dict[str, Any]]:
        rows = []
        for name in sorted(self._versions):
            pinned = self._pins.get(name)
            for version in self._versions[name]:
                rows.append(
                    {
                        "name": name,
                        "version": version.version,
                        "pinned": version.version == pinned,
                        "hash": version.hash[:12],
                        "created_at": version.created_at.isoformat(timespec="seconds"),
                        "author": version.author,
                        "variables": ", ".join(version.variables()),
                        "parent": self._lineage.get(version.ref, {}).get("parent"),
                    }
                )
        return rows

    # -- writing ------------------------------------------------------------------------

    def add(
        self, name: str, template: str, author: str, lineage: Mapping[str, Any] | None = None
    ) -> tuple[PromptVersion, bool]:
        """Store a new version of `name`; (the version, True) or (the existing one, False) for known text.

        `lineage` (where an optimized version came from: its parent, score, the optimizer's
        reasoning) goes into the `prompt.added` audit entry, on the hash chain."""
        if not PROMPT_NAME.match(name):
            raise PromptError(
                f"prompt name {name!r}: use letters, digits, '_', '.' or '-' (no '@')", code="prompt_refused"
            )
        if not template.strip():
            raise PromptError(f"prompt {name!r}: the template is empty", code="prompt_refused")
        digest = content_hash(template)
        with self._lock:
            known = self.versions(name)
            same = next((v for v in known if v.hash == digest), None)
            if same is not None:
                return same, False
            floor = max((version_number(v.version) for v in known), default=0)
            if self.mirror is not None:  # the cluster numbers it, so v3 is one text everywhere
                version, added = self.mirror.prompt_added(name, template, digest, author, floor)
            else:
                made = PromptVersion(name, f"v{floor + 1}", template, digest, utc_now(), author)
                version, added = made, True
            self._keep(version)
        if added:
            payload: dict[str, Any] = {"hash": digest, "variables": version.variables()}
            if lineage:
                payload["lineage"] = dict(lineage)
                self._lineage = {**self._lineage, version.ref: dict(lineage)}
            self._audit(author, "prompt.added", version.ref, payload)
        return version, added

    def pin(self, name: str, version: str, actor: str) -> str | None:
        """Pin `name` to `version` (a rollback is a pin to an older one); returns the previous pin."""
        with self._lock:
            chosen = self.resolve(name, version)
            previous = self._pins.get(name)
            if self.mirror is not None:
                self.mirror.prompt_pinned(name, chosen.version, actor)
            self._pins = {**self._pins, name: chosen.version}
            self.pinned_here += 1
        self._audit(actor, "prompt.pin", chosen.ref, {"previous": previous, "version": chosen.version})
        return previous

    def take(self, versions: Iterable[PromptVersion]) -> None:
        """Versions added on other replicas (the cluster's sync job): kept in the store too."""
        with self._lock:
            for version in versions:
                self._keep(version)

    def follow_pins(self, pins: Mapping[str, str], pinned_before: int) -> None:
        """The cluster's pins in force, as read when `pinned_here` was `pinned_before`: a pin
        made here since then is newer than what was read, and the next read brings it."""
        with self._lock:
            if self.pinned_here == pinned_before and pins != self._pins:
                self._pins = dict(pins)

    def _keep(self, new: PromptVersion) -> None:
        """Into the store and the maps, unless this name and version are here already."""
        known = self.versions(new.name)
        if any(v.version == new.version for v in known):
            return
        self._db.cursor().execute(
            "INSERT INTO prompts (name, version, template, hash, created_at, author) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [new.name, new.version, new.template, new.hash, new.created_at, new.author],
        )
        ordered = tuple(sorted((*known, new), key=lambda v: version_number(v.version)))
        self._versions = {**self._versions, new.name: ordered}

    def answer(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The admin API's `/_admin/prompts`: `{"action": "add" | "pin" | "list" | "get", …}`.

        A refusal is a PromptError (an Invalid domain error with its code).
        """
        action, actor = request.get("action"), str(request.get("actor") or "admin-api")
        if action == "add":
            lineage = request.get("lineage")
            template = str(request.get("template") or "")
            version, added = self.add(
                str(request.get("name")), template, actor, lineage if isinstance(lineage, dict) else None
            )
            return {"name": version.name, "version": version.version, "hash": version.hash, "added": added}
        if action == "pin":
            name = str(request.get("name"))
            previous = self.pin(name, str(request.get("version")), actor)
            return {"name": name, "version": self._pins[name], "previous": previous}
        if action == "list":
            return {"prompts": self.listing()}
        if action == "get":
            wanted = request.get("version")
            found = self.resolve(str(request.get("name")), str(wanted) if wanted else None)
            return {
                "name": found.name,
                "version": found.version,
                "template": found.template,
                "hash": found.hash,
                "pinned": self._pins.get(found.name),
            }
        raise PromptError("send {'action': 'add' | 'pin' | 'list' | 'get', …}", code="prompt_refused")

    def _audit(self, actor: str, action: str, ref: str, payload: dict[str, Any]) -> None:
        self._recorder.record_audit(
            AuditEvent(
                actor=actor, actor_kind="human", action=action, subject=f"prompt:{ref}", payload=payload
            )
        )
