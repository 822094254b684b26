"""Rehearsal dock: play a scenario step by step in the 3D view, pause and orbit, export a video;
File > Export report... (PDF or HTML).

The scenes come from ``app.rehearsal`` (the same ones the CLI video renders).
While a rehearsal is shown, the 3D view's other actors are hidden and put
back when it stops. Video export renders one frame per event-loop turn on the
GUI thread (VTK rendering stays on one thread), with progress and cancel.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QListWidget, QProgressBar, QPushButton,
                               QSpinBox, QVBoxLayout, QWidget)

from app.ui.extensions import make_action, menu

log = logging.getLogger(__name__)
PREFIX = "rehearsal_"


class RehearsalPanel(QWidget):
    """Step list, transport buttons and video export for one scenario's rehearsal."""

    def __init__(self, window) -> None:
        super().__init__()
        self.setObjectName("rehearsal_panel")
        self.window = window
        self.rehearsal = None
        self.frame = 0
        self._plan: list[tuple[int, float]] = []
        self._cache: dict = {}
        self._hidden: list = []
        self._export = None
        self._clock = (0.0, 0)
        self.frames_shown = 0
        self.export_result: Optional[dict] = None
        self.scenario = QComboBox()
        self.prepare_button = QPushButton("Prepare rehearsal")
        self.steps = QListWidget()
        self.steps.setObjectName("rehearsal_steps")
        self.back_button, self.play_button, self.forward_button = (QPushButton(t) for t in ("<< Step", "Play",
                                                                                             "Step >>"))
        self.stop_button = QPushButton("Stop")
        self.fps = QSpinBox()
        self.fps.setRange(1, 30)
        self.fps.setValue(8)
        self.fps.setSuffix(" fps")
        self.frame_label = QLabel("No rehearsal")
        self.export_button = QPushButton("Export video...")
        self.export_progress = QProgressBar()
        self.export_progress.setRange(0, 1000)
        self.export_progress.hide()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._tick)
        self._build()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Scenario"))
        layout.addWidget(self.scenario)
        layout.addWidget(self.prepare_button)
        layout.addWidget(self.steps, 1)
        row = QHBoxLayout()
        for b in (self.back_button, self.play_button, self.forward_button, self.stop_button):
            row.addWidget(b)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.frame_label, 1)
        row.addWidget(self.fps)
        layout.addLayout(row)
        layout.addWidget(self.export_button)
        layout.addWidget(self.export_progress)
        layout.addWidget(QLabel("Paused: drag in the 3D view to orbit."))
        self.prepare_button.clicked.connect(self.prepare)
        self.play_button.clicked.connect(self.toggle_play)
        self.back_button.clicked.connect(lambda: self.step_by(-1))
        self.forward_button.clicked.connect(lambda: self.step_by(1))
        self.stop_button.clicked.connect(self.stop)
        self.steps.currentRowChanged.connect(self._on_row)
        self.export_button.clicked.connect(self._export_clicked)
        self.fps.valueChanged.connect(lambda v: self.timer.setInterval(int(1000 / v)))
        self._update_buttons()

    # -- case and preparation -----------------------------------------------
    def set_case(self, case) -> None:
        from app.rehearsal import list_scenarios

        current = self.scenario.currentText()
        names = list(list_scenarios(case)) if case is not None else []
        self.scenario.blockSignals(True)
        self.scenario.clear()
        self.scenario.addItems(names)
        if current in names:
            self.scenario.setCurrentText(current)
        self.scenario.blockSignals(False)
        if case is None or (self.rehearsal is not None and self.rehearsal.scenario not in names):
            self.stop()
        self._update_buttons()

    def prepare(self) -> bool:
        """Build the rehearsal of the chosen scenario (a few seconds: meshes the moved and fixed bone).

        Built on the GUI thread: its VTK meshes are drawn by the 3D view right after, and VTK
        objects made on the worker thread crashed the renderer under load (std::bad_alloc).
        """
        from PySide6.QtGui import QGuiApplication
        from PySide6.QtCore import Qt

        from app.rehearsal import build_rehearsal
        from imaging.errors import TwinPlanError

        case, name = self.window.case, self.scenario.currentText()
        if case is None or not name or self.window.runner.busy:
            return False
        self.stop()
        self.window.statusBar().showMessage(f"Preparing rehearsal of {name}...")
        QGuiApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            rehearsal = build_rehearsal(case, name, frames_per_step=max(2, self.fps.value()),
                                        move_frames=2 * self.fps.value())
        except TwinPlanError as exc:
            self.window.report_error(exc, "Rehearsal")
            return False
        finally:
            QGuiApplication.restoreOverrideCursor()
        self._prepared(rehearsal)
        self.window.statusBar().showMessage(f"Rehearsal of {name}: {rehearsal.n_frames} frames", 5000)
        return True

    def _prepared(self, rehearsal) -> None:
        self.rehearsal = rehearsal
        self._plan = rehearsal.frame_plan()
        self.steps.blockSignals(True)
        self.steps.clear()
        for i, s in enumerate(rehearsal.steps):
            self.steps.addItem(f"{i + 1}. {s.title}: {s.description}")
        self.steps.blockSignals(False)
        self._hide_others()
        self.show_frame(0)
        self._update_buttons()

    # -- playing ------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self.timer.isActive()

    def toggle_play(self) -> None:
        if self.rehearsal is None:
            return
        if self.playing:
            self.timer.stop()
        else:
            if self.frame >= len(self._plan) - 1:
                self.show_frame(0)
            self._clock = (time.perf_counter(), self.frame)
            self.frames_shown = 0
            self.timer.start(int(1000 / self.fps.value()))
        self._update_buttons()

    def _tick(self) -> None:
        """Real-time playback: show the frame due now (frames are dropped when drawing is slower)."""
        if getattr(self.window, "_closed", False) or self.rehearsal is None:
            self.timer.stop()
            return
        t0, start = self._clock
        due = min(start + 1 + int((time.perf_counter() - t0) * self.fps.value()), len(self._plan) - 1)
        self.show_frame(max(due, self.frame + 1) if due < len(self._plan) - 1 else len(self._plan) - 1)
        self.frames_shown += 1
        if self.frame >= len(self._plan) - 1:
            self.timer.stop()
            self._update_buttons()

    def step_by(self, delta: int) -> None:
        """Pause and jump forward (+1) to the end of this step, or back (-1) to its start; from the
        end (start) already, to the end of the next (start of the previous) step."""
        if self.rehearsal is None:
            return
        self.timer.stop()
        current = self._plan[self.frame][0]
        neighbour = self.frame + (1 if delta > 0 else -1)
        at_edge = not 0 <= neighbour < len(self._plan) or self._plan[neighbour][0] != current
        step = current + delta if at_edge else current
        step = min(max(step, 0), len(self.rehearsal.steps) - 1)
        frames = [i for i, (s, _t) in enumerate(self._plan) if s == step]
        self.show_frame(frames[-1] if delta > 0 else frames[0])
        self._update_buttons()

    def _on_row(self, row: int) -> None:
        if self.rehearsal is not None and row >= 0 and row != self._plan[self.frame][0]:
            self.timer.stop()
            self.show_frame([i for i, (s, _t) in enumerate(self._plan) if s == row][-1])
            self._update_buttons()

    def show_frame(self, index: int) -> None:
        """Draw frame ``index`` of the rehearsal in the 3D view (camera kept if the user orbited)."""
        from app.rehearsal_video import draw_layers, set_camera

        plotter = self.window.scene.plotter
        first = not self._cache
        self.frame = index
        step, t = self._plan[index]
        layers = self.rehearsal.scene(step, t)
        names = draw_layers(plotter, layers, PREFIX, self._cache, scalar_bar=False)
        for stale in [n for n in self._cache if n not in names]:
            plotter.remove_actor(stale, render=False)
            self._cache.pop(stale)
        if first:
            set_camera(plotter, self.rehearsal.camera)
        self.steps.blockSignals(True)
        self.steps.setCurrentRow(step)
        self.steps.blockSignals(False)
        ranges = [f"{x.scalars.replace('_', ' ')} {x.clim[0]:.2f}-{x.clim[1]:.2f}" for x in layers
                  if x.scalars and x.clim]
        self.frame_label.setText(f"Step {step + 1}/{len(self.rehearsal.steps)}, frame {index + 1}/{len(self._plan)}"
                                 + "".join(f"\n{r}" for r in ranges))
        self.window.scene.request_render()

    def stop(self) -> None:
        """Leave the rehearsal: remove its actors and show the view as it was."""
        self.timer.stop()
        if self._export is not None:
            self.cancel_export()
        plotter = self.window.scene.plotter
        for name in list(self._cache):
            plotter.remove_actor(name, render=False)
        self._cache.clear()
        for actor, visible in self._hidden:
            actor.SetVisibility(visible)
        self._hidden = []
        self.rehearsal, self._plan, self.frame = None, [], 0
        self.steps.clear()
        self.frame_label.setText("No rehearsal")
        self.window.scene.request_render()
        self._update_buttons()

    def _hide_others(self) -> None:
        for name, actor in self.window.scene.plotter.renderer.actors.items():
            if not name.startswith(PREFIX) and hasattr(actor, "GetVisibility"):
                self._hidden.append((actor, actor.GetVisibility()))
                actor.SetVisibility(False)

    # -- export -------------------------------------------------------------------
    def _export_clicked(self) -> None:
        if self._export is not None:
            self.cancel_export()
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export rehearsal video", str(Path.home() / "rehearsal.mp4"),
                                              "MP4 video (*.mp4);;Animated GIF (*.gif)")
        if path:
            self.export_video(path)

    def export_video(self, path, size: tuple[int, int] = (640, 480)) -> bool:
        """Start writing the video; one frame per event-loop turn. False if nothing to export."""
        from app.rehearsal_video import check_video_target, iter_export
        from imaging.errors import InputError

        if self.rehearsal is None or self._export is not None:
            return False
        try:
            check_video_target(path, self.fps.value(), size)
        except InputError as exc:
            self.window.report_error(exc, "Export video")
            return False
        self.timer.stop()
        self._export = iter_export(self.rehearsal, path, fps=self.fps.value(), size=size)
        self.export_result = None
        self.export_progress.setValue(0)
        self.export_progress.show()
        self._update_buttons()
        QTimer.singleShot(0, self._export_step)
        return True

    def _export_step(self) -> None:
        if self._export is None:
            return
        if getattr(self.window, "_closed", False):
            self.cancel_export()
            return
        try:
            done, total = next(self._export)
        except StopIteration as stop:
            self._export = None
            self.export_result = stop.value
            self.window.statusBar().showMessage(f"Video written: {stop.value['file']} ({stop.value['frames']} "
                                                f"frames, {stop.value['seconds']:.1f} s)")
            self._export_finished()
            return
        except Exception as exc:  # shown to the user; the partial file is gone
            self._export = None
            self._export_finished()
            self.window.report_error(exc, "Export video")
            return
        self.export_progress.setValue(int(1000 * done / total))
        self.export_progress.setFormat(f"Frame {done}/{total}")
        QTimer.singleShot(0, self._export_step)

    def cancel_export(self) -> None:
        if self._export is not None:
            self._export.close()  # removes the partial file
            self._export = None
            self.window.statusBar().showMessage("Cancelled: video export; no file written")
            self._export_finished()

    def _export_finished(self) -> None:
        self.export_progress.hide()
        self._update_buttons()

    def _update_buttons(self) -> None:
        ready = self.rehearsal is not None
        exporting = self._export is not None
        self.prepare_button.setEnabled(self.scenario.count() > 0 and not exporting)
        for b in (self.back_button, self.play_button, self.forward_button, self.stop_button):
            b.setEnabled(ready and not exporting)
        self.play_button.setText("Pause" if self.playing else "Play")
        self.export_button.setEnabled(ready)
        self.export_button.setText("Cancel export" if exporting else "Export video...")


# -- report ---------------------------------------------------------------------------
def export_report(window, path) -> bool:
    """Build and write the (de-identified) report of the open case in the worker; False if not started."""
    from app.report import build_report
    from app.report_output import REPORT_SUFFIXES, write_report
    from imaging.errors import InputError

    if window.case is None:
        window.report_error(InputError("nothing to report: open a case first"), "Export report")
        return False
    if not str(path).lower().endswith(REPORT_SUFFIXES):
        window.report_error(InputError(f"{path}: use a .pdf or .html file name"), "Export report")
        return False
    case = window.case
    # VTK renders on this (GUI) thread; tables, plots (no pyplot) and the file on the worker.
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication

    from app.report import render_scenario_views

    window.statusBar().showMessage("Rendering scenario views...")
    QGuiApplication.setOverrideCursor(Qt.WaitCursor)
    try:
        views = render_scenario_views(case)
    finally:
        QGuiApplication.restoreOverrideCursor()

    def step(progress, cancelled):
        model = build_report(case, views=views, progress=lambda f, m: progress(0.9 * f, m), cancelled=cancelled)
        return write_report(model, path)

    def done(written: dict) -> None:
        window.last_report = written
        pages = f", {written['pages']} pages" if written["pages"] else ""
        window.statusBar().showMessage(f"Report written: {written['file']}{pages}")

    return window.runner.run("Writing report", step, on_done=done,
                             on_error=lambda exc: window.report_error(exc, "Export report"))


def _export_report_dialog(window) -> None:
    path, _ = QFileDialog.getSaveFileName(window, "Export report", str(Path.home() / "report.pdf"),
                                          "PDF (*.pdf);;HTML (*.html)")
    if path:
        export_report(window, path)


def install(window) -> None:
    panel = RehearsalPanel(window)
    window.rehearsal_panel = panel
    window.rehearsal_dock = window._dock("Rehearsal", panel)
    window.rehearsal_dock.hide()
    toggle = window.rehearsal_dock.toggleViewAction()
    toggle.setText("&Rehearsal")
    window.actions_by_name["rehearsal_panel"] = toggle
    menu(window, "&View").addAction(toggle)
    menu(window, "&File").addAction(make_action(window, "export_report", "Export &report...",
                                                lambda: _export_report_dialog(window), "Ctrl+Shift+R",
                                                "Write a de-identified PDF or HTML report of the case"))
    window.case_hooks.append(panel.set_case)
    _follow_case_changes(window, panel)


def _follow_case_changes(window, panel) -> None:
    """Refresh the scenario list when the case's scenarios or surfaces change."""
    def hook(case) -> None:
        if case is not None:
            case.changed.connect(lambda kind, _name: panel.set_case(window.case)
                                 if kind in ("scenario", "surface") else None)
    window.case_hooks.append(hook)
