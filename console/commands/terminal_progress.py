"""A progress bar on the caller's terminal (stderr), or nothing at all when it is not one.

The bar is rich's, written to the stream it is given (the copy of stderr that survives
llama-cpp-python's quiet model loading), never to stdout, which carries the command's
output. Without a stream (stderr piped or captured) every report is dropped.
"""

from __future__ import annotations

from types import TracebackType
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from console.progress import Step


class TerminalProgress:
    """`with TerminalProgress(stream, "import") as report: job(progress=report)`."""

    def __init__(self, stream: IO[str] | None, title: str) -> None:
        self.title = title
        self._bar = _bar(stream) if stream is not None else None
        self._task: TaskID | None = None

    def __enter__(self) -> TerminalProgress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=None)
        return self

    def __call__(self, step: Step) -> None:
        if self._bar is None or self._task is None:
            return
        name = f"{self.title}: {step.name}" if step.name else self.title
        self._bar.update(self._task, description=name, completed=step.done, total=step.total)
        self._bar.refresh()  # every step is drawn, however quickly the next one comes (jobs have few)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is None or self._task is None:
            return
        if kind is None:  # a job without steps ends as one step done
            task = self._bar.tasks[self._task]
            total = task.total or 1
            self._bar.update(self._task, description=f"{self.title}: done", completed=total, total=total)
        self._bar.stop()


def _bar(stream: IO[str]) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(file=stream, force_terminal=True),
        # Never swap sys.stdout/sys.stderr: stdout is the command's output, not the bar's.
        redirect_stdout=False,
        redirect_stderr=False,
    )
