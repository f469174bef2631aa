"""Run `python -m console …` with stderr on a pseudo-terminal, as a user at a terminal runs it."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from dataclasses import dataclass
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str  # what the terminal received, control sequences removed


def on_terminal(*args: str, data_dir: Path, columns: int = 120) -> Run:
    """The command with stdout piped and stderr a terminal of `columns` columns."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    received: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(master, received))
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "console", *args, "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=slave,
            stdin=subprocess.DEVNULL,
            text=True,
            check=False,
            env={**os.environ, "COLUMNS": str(columns), "TERM": "xterm-256color"},
        )
    finally:
        os.close(slave)  # the child's copy is closed too: the reader sees the end
        reader.join()
        os.close(master)
    return Run(done.returncode, done.stdout, ANSI.sub("", b"".join(received).decode(errors="replace")))


def _drain(master: int, into: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every end of the terminal is closed
            return
        if not chunk:
            return
        into.append(chunk)
