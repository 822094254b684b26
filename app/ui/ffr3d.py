"""3D Navier-Stokes FFR from the Virtual FFR dock, in the background.

The baseline lumen is meshed on the window's worker (``mesh_baseline_3d`` in
a child process through ``run_in_process``: gmsh wants the main thread of
its process, and a native crash there must not take the window down), then
solved by ``mechanics.flow_worker.FlowWorker`` in a child process: its
progress arrives on a reader thread and a waiter thread reads the result
files; both reach the GUI thread through Qt signals (queued), so the window
never waits. Cancel (button or Esc) stops the meshing step or kills the
child. The result goes into the session (``FfrSession.result3d``); a failed
or cancelled run leaves the session and its 1D results as they were.
"""
from __future__ import annotations

import logging
import tempfile
import threading
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (QDoubleSpinBox, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QProgressBar,
                               QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from app.ffr_session import FfrSession, mesh_baseline_3d, read_flow_result

log = logging.getLogger(__name__)

COLUMNS = ("Outlet", "FFR 1D", "FFR 3D", "3D - 1D")
#: Share of the progress bar given to meshing; the solve takes the rest.
MESH_SHARE = 0.1


class Ffr3dBox(QGroupBox):
    """Element size, Compute 3D / Cancel, progress, solver status line and the 1D | 3D outlet table."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__("3D Navier-Stokes (background)", parent)
        self.size_fraction = QDoubleSpinBox(decimals=2, minimum=0.15, maximum=1.5, singleStep=0.05, value=0.5,
                                            suffix=" x radius")
        self.size_fraction.setToolTip("Core element size as a fraction of the local lumen radius "
                                      "(smaller: finer mesh, slower solve)")
        self.compute_button = QPushButton("Compute 3D (Navier-Stokes)")
        self.compute_button.setToolTip("Mesh the baseline lumen and solve steady Navier-Stokes in a background "
                                       "process (Ctrl+Alt+3); the 1D model stays live meanwhile")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the 3D run (Esc); the 1D results stay")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.status = QLabel("Not computed.")
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        top = QHBoxLayout()
        top.addWidget(QLabel("Element size"))
        top.addWidget(self.size_fraction)
        top.addWidget(self.compute_button, 1)
        run = QHBoxLayout()
        run.addWidget(self.progress, 1)
        run.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(run)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
        self.set_running(False)

    def set_running(self, on: bool) -> None:
        self.compute_button.setEnabled(not on)
        self.size_fraction.setEnabled(not on)
        self.progress.setVisible(on)
        self.cancel_button.setVisible(on)
        if on:
            self.progress.setValue(0)

    def set_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(max(0.0, min(fraction, 1.0)) * 1000))
        self.progress.setFormat(f"{message}  %p%")

    def show_rows(self, rows: list[dict], stale: bool) -> None:
        """Fill the outlet table; a stale 3D column (geometry changed since) is greyed and marked."""
        self.table.setRowCount(len(rows))
        self.table.setVisible(bool(rows))
        rows_px = sum(self.table.rowHeight(r) for r in range(len(rows))) or self.table.verticalHeader().defaultSectionSize()
        self.table.setFixedHeight(min(120, self.table.horizontalHeader().height() + rows_px + 4))
        self.table.setHorizontalHeaderItem(2, QTableWidgetItem("FFR 3D (earlier geometry)" if stale else "FFR 3D"))
        for r, row in enumerate(rows):
            values = (row["outlet"], f"{row['ffr_1d']:.3f}", f"{row['ffr_3d']:.3f}", f"{row['difference']:+.3f}")
            for c, v in enumerate(values):
                item = QTableWidgetItem(v)
                if stale and c >= 2:
                    item.setForeground(Qt.gray)
                self.table.setItem(r, c, item)


class _RunSignals(QObject):
    """Signals of one 3D run, emitted from the reader/waiter threads, delivered on the GUI thread."""

    progress = Signal(float, str)
    done = Signal(object)
    failed = Signal(object)
    cancelled = Signal()


class _Run:
    """State of one run: the session it belongs to, its phase, its worker and its scratch folder."""

    def __init__(self, session: FfrSession, radius_fraction: float) -> None:
        self.session = session
        self.scenario = list(session.scenario)
        self.radius_fraction = radius_fraction
        self.signals = _RunSignals()
        self.phase = "mesh"
        self.worker = None
        self.cancel_requested = False
        self.tmp = tempfile.TemporaryDirectory(prefix="twinplan-ffr3d-")
        self.tets = 0


class Ffr3dController(QObject):
    """Runs 3D FFR for the FFR panel's session on ``window`` (its runner, status bar and error handler)."""

    def __init__(self, window, panel) -> None:
        super().__init__(panel)
        self.window = window
        self.panel = panel
        self.box: Ffr3dBox = panel.box3d
        self.run: Optional[_Run] = None
        self.box.compute_button.clicked.connect(self.start)
        self.box.cancel_button.clicked.connect(self.cancel)
        if "cancel" in window.actions_by_name:  # Esc: the window's one cancel key stops this run too
            window.actions_by_name["cancel"].triggered.connect(self.cancel)
        panel.session_changed.connect(self._on_session_changed)
        window.installEventFilter(self)

    @property
    def running(self) -> bool:
        return self.run is not None

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if obj is self.window and event.type() == QEvent.Close:
            # the child runs in its own session: kill it with the window (unless the close is refused)
            QTimer.singleShot(0, lambda: self.cancel() if getattr(self.window, "_closed", True) else None)
        return False

    def start(self) -> bool:
        """Mesh the baseline lumen on the worker, then solve it in a child process."""
        session = self.panel.session
        if session is None:
            self.window.report_error("compute the centerlines and 1D FFR first", "3D FFR")
            return False
        if self.running:
            self.window.statusBar().showMessage("3D FFR is already running (Esc cancels)", 5000)
            return False
        if not self.window._check_idle():
            return False
        run = _Run(session, self.box.size_fraction.value())
        lumen, tree, baseline_tree = session.lumen, session.tree, session.baseline_tree
        run.signals.progress.connect(lambda f, m: self._progress(run, f, m))
        run.signals.done.connect(lambda res: self._finish(run, "done", res))
        run.signals.failed.connect(lambda exc: self._finish(run, "failed", exc))
        run.signals.cancelled.connect(lambda: self._finish(run, "cancelled", None))

        def step(progress, cancelled):
            from mechanics.process_runner import run_in_process

            return run_in_process(mesh_baseline_3d, lumen, tree, baseline_tree, radius_fraction=run.radius_fraction,
                                  progress=progress, cancelled=cancelled, title="lumen meshing")

        self.run = run
        self.box.set_running(True)
        self.box.status.setText("Meshing the lumen...")
        started = self.window.runner.run("Meshing the lumen for 3D FFR", step,
                                         lambda mesh: self._solve(run, mesh),
                                         lambda exc: self._finish(run, "failed", exc),
                                         lambda: self._finish(run, "cancelled", None))
        if not started:
            self._finish(run, "failed", RuntimeError("the worker is busy"))
        return started

    def _solve(self, run: _Run, mesh) -> None:
        from mechanics.flow_worker import FlowWorker

        if run is not self.run or run.cancel_requested:
            self._finish(run, "cancelled", None)
            return
        run.tets = mesh.n_tets
        folder = Path(run.tmp.name)
        try:
            mesh.save(folder / "lumen.npz")
            run.worker = FlowWorker(folder / "lumen.npz", folder / "out",
                                    progress=lambda f, m: run.signals.progress.emit(MESH_SHARE + (1 - MESH_SHARE) * f,
                                                                                    m)).start()
        except Exception as exc:  # noqa: BLE001 -- a worker that cannot start is reported like a failed one
            self._finish(run, "failed", exc)
            return
        run.phase = "solve"
        self.box.status.setText(f"Solving Navier-Stokes on {mesh.n_tets:,} tets in a background process...")
        self._progress(run, MESH_SHARE, "starting the solver")
        threading.Thread(target=self._wait, args=(run,), name="ffr3d-wait", daemon=True).start()

    @staticmethod
    def _wait(run: _Run) -> None:
        """Waiter thread: the worker's result files, read here so the GUI thread only draws."""
        try:
            run.worker.wait()
            result = read_flow_result(Path(run.tmp.name) / "out", scenario=run.scenario,
                                      params={"radius_fraction": run.radius_fraction, "tets": run.tets})
        except CancelledError:
            run.signals.cancelled.emit()
        except BaseException as exc:  # noqa: BLE001 -- every failure goes to the one error handler
            run.signals.failed.emit(exc)
        else:
            run.signals.done.emit(result)

    def _progress(self, run: _Run, fraction: float, message: str) -> None:
        if run is self.run:
            self.box.set_progress(fraction if run.phase == "solve" else MESH_SHARE * fraction, message)

    def cancel(self) -> None:
        """Stop the running 3D job (meshing or solve); nothing in the session changes."""
        run = self.run
        if run is None or run.cancel_requested:
            return
        run.cancel_requested = True
        self.box.status.setText("Cancelling the 3D run...")
        if run.phase == "mesh":
            self.window.runner.cancel()
        elif run.worker is not None:
            run.worker.cancel()

    def _finish(self, run: _Run, state: str, payload) -> None:
        if run is not self.run:
            return
        self.run = None
        self.box.set_running(False)
        run.tmp.cleanup()
        if state == "cancelled":
            self.box.status.setText("3D run cancelled; the 1D results are unchanged.")
            self.window.statusBar().showMessage("3D FFR cancelled", 5000)
        elif state == "failed":
            self.box.status.setText(f"3D run failed: {payload}")
            self.window.report_error(payload, "3D FFR")
        elif run.session is not self.panel.session:
            self.box.status.setText("3D result discarded: the centerlines were recomputed meanwhile.")
        else:
            run.session.result3d = payload
            self.box.status.setText(payload.summary())
            self.window.statusBar().showMessage(payload.summary(), 10000)
            self.panel.show_3d()

    def _on_session_changed(self) -> None:
        if self.run is not None and self.run.session is not self.panel.session:
            self.cancel()
