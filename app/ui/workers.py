"""Run one pipeline step at a time on a worker thread, with progress and cancel.

The step is any callable taking ``progress`` and ``cancelled`` keyword
arguments (the pipeline's convention). Its result is handed back on the GUI
thread; a cancelled step (``CancelledError``, or a cancel that arrives after
the step finished) returns nothing, so the case stays as it was.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import CancelledError
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)

Step = Callable[..., Any]


class _WorkerSignals(QObject):
    """Signals of one run; emitted on the worker thread, delivered on the GUI thread."""

    progress = Signal(float, str)
    done = Signal(object)
    failed = Signal(object)
    cancelled = Signal()


class StepWorker(QRunnable):
    """A ``QRunnable`` calling ``step(progress=..., cancelled=...)`` once.

    Parameters
    ----------
    step : callable
        The work; receives ``progress(fraction, message)`` and ``cancelled()``.
    """

    def __init__(self, step: Step) -> None:
        super().__init__()
        self.step = step
        self.signals = _WorkerSignals()
        self.cancel_event = threading.Event()
        self.setAutoDelete(False)  # the runner keeps it until its signals are delivered

    def _progress(self, fraction: float, message: str) -> None:
        self.signals.progress.emit(float(fraction), str(message))

    def run(self) -> None:
        try:
            result = self.step(progress=self._progress, cancelled=self.cancel_event.is_set)
        except CancelledError:
            self.signals.cancelled.emit()
        except BaseException as exc:  # noqa: BLE001 -- every failure goes to the one error handler
            self.signals.failed.emit(exc)
        else:
            if self.cancel_event.is_set():
                self.signals.cancelled.emit()
            else:
                self.signals.done.emit(result)


class TaskRunner(QObject):
    """Runs at most one ``StepWorker`` at a time on a private thread pool.

    Signals
    -------
    started(str)
        A task with this title started.
    progress(float, str)
        Fraction 0..1 and message of the running task.
    finished(str)
        The task ended: ``"done"``, ``"failed"`` or ``"cancelled"``.
    """

    started = Signal(str)
    progress = Signal(float, str)
    finished = Signal(str)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._worker: Optional[StepWorker] = None
        self.title = ""
        self.cancellable = True

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def run(
        self,
        title: str,
        step: Step,
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
        on_cancelled: Optional[Callable[[], None]] = None,
        cancellable: bool = True,
    ) -> bool:
        """Start ``step`` on the worker thread.

        Parameters
        ----------
        title : str
            What the user sees in the status bar ("Importing scan").
        step : callable
            ``step(progress=, cancelled=) -> result``.
        on_done, on_error, on_cancelled : callables
            Called on the GUI thread with the result, the exception, or nothing.
        cancellable : bool
            False for work that cannot be undone half-way (saving): ``cancel``
            is then ignored.

        Returns
        -------
        bool
            False (nothing started) if a task is already running.
        """
        if self._worker is not None:
            return False
        worker = StepWorker(step)
        self._worker = worker
        self.title = title
        self.cancellable = cancellable

        def finish(state: str, callback: Optional[Callable], *args) -> None:
            if self._worker is not worker:
                return
            self._worker = None
            # Announce the end first: the callback may start the next task.
            self.finished.emit(state)
            if callback is not None:
                callback(*args)

        worker.signals.progress.connect(self.progress)
        worker.signals.done.connect(lambda result: finish("done", on_done, result))
        worker.signals.failed.connect(lambda exc: finish("failed", on_error, exc))
        worker.signals.cancelled.connect(lambda: finish("cancelled", on_cancelled))
        log.info("task started: %s", title)
        self.started.emit(title)
        self.pool.start(worker)
        return True

    def cancel(self) -> None:
        """Ask the running task to stop (it stops at its next check)."""
        if self._worker is not None and self.cancellable:
            log.info("task cancel requested: %s", self.title)
            self._worker.cancel_event.set()

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel any task and wait for the thread; True if it stopped in time."""
        self.cancel()
        return self.pool.waitForDone(timeout_ms)
