"""The Engine: owns the store and the recorder (and, as they land, the gateway,
providers and evaluator). The console, `fleetdeck serve` and the CLI all drive one."""

from __future__ import annotations

from types import TracebackType

from console.settings import Settings
from console.store.db import Database
from console.store.recorder import Recorder


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.db_path)
        self.recorder = Recorder(
            self.db,
            settings.spool_dir,
            flush_interval_s=settings.recorder_flush_interval_s,
            batch_traces=settings.recorder_batch_traces,
            fsync_interval_s=settings.spool_fsync_interval_s,
        )
        self._running = False
        # A crashed predecessor's spool is stored before anyone reads the database.
        self.replayed = self.recorder.replay()

    def start(self) -> None:
        """Start the background services: the recorder's writer."""
        self.recorder.start()
        self._running = True

    def stop(self) -> None:
        if self._running:
            self.recorder.stop()
            self._running = False
        self.db.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
