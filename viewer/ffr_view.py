"""Virtual FFR display: baseline and plan vessels coloured by FFR side by side, FFR along a centerline.

Draws what it is given: lumen surfaces and centerline polylines carrying a
point array ``FFR`` (and ``Radius`` in mm), and 1D curves (arc length mm,
FFR). The FFR scale is fixed to 0.5-1.0 with the 0.80 decision threshold
marked: red below it, green above, so a flow-limiting segment stands out.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
import pyvista as pv
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget
from pyvistaqt import QtInteractor

from viewer.scene3d import BACKGROUND

log = logging.getLogger(__name__)

FFR_RANGE = (0.5, 1.0)
FFR_THRESHOLD = 0.80
#: Dark red at 0.5, orange just under 0.80, then a sharp step to green: the threshold is the colour edge.
FFR_CMAP = LinearSegmentedColormap.from_list("ffr", [
    (0.0, "#7f0000"), (0.58, "#ff7f00"), (0.599, "#ffb000"), (0.601, "#a6d96a"), (1.0, "#1a9641")])


class _Pane(QWidget):
    """One titled 3D view of a vessel coloured by FFR."""

    def __init__(self, title: str, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.title = QLabel(title)
        self.title.setStyleSheet("font-weight:bold; padding:2px;")
        self.plotter = QtInteractor(self, auto_update=False)
        self.plotter.set_background(BACKGROUND[0], top=BACKGROUND[1])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(1, 1, 1, 1)
        layout.addWidget(self.title)
        layout.addWidget(self.plotter.interactor, 1)

    def show_vessel(self, surface: Optional[pv.PolyData], centerlines: Optional[pv.PolyData], caption: str) -> None:
        p = self.plotter
        p.clear()
        bar = dict(title="FFR", n_labels=6, fmt="%.2f", color="white", vertical=True,
                   position_x=0.86, position_y=0.1, height=0.8, width=0.06)
        if surface is not None and "FFR" in surface.point_data:
            p.add_mesh(surface, scalars="FFR", cmap=FFR_CMAP, clim=FFR_RANGE, smooth_shading=True,
                       scalar_bar_args=bar, name="lumen")
            bar = None
        if centerlines is not None and centerlines.n_points:
            p.add_mesh(centerlines, scalars="FFR" if "FFR" in centerlines.point_data else None, cmap=FFR_CMAP,
                       clim=FFR_RANGE, line_width=3, show_scalar_bar=bar is not None,
                       scalar_bar_args=bar or {}, name="centerlines",
                       opacity=1.0 if surface is None else 0.6)
        p.add_text(caption, position="upper_left", font_size=10, color="white", name="caption")
        p.reset_camera()
        p.render()


class FfrView(QWidget):
    """Baseline | plan (| 3D Navier-Stokes) panes with linked cameras above an FFR-along-centerline plot.

    The third pane is made on the first 3D result: each pane is a VTK render
    window, so one that may never be used is not built up front.
    """

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("ffr_view")
        self.baseline = _Pane("Baseline")
        self.plan = _Pane("Plan (stented / scenario)")
        self.panes = panes = QSplitter()
        panes.addWidget(self.baseline)
        panes.addWidget(self.plan)
        self.flow3d: Optional[_Pane] = None
        self.figure = Figure(figsize=(6, 2.2), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(170)
        self.axes = self.figure.add_subplot(111)
        split = QSplitter(Qt.Vertical)
        split.addWidget(panes)
        split.addWidget(self.canvas)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)
        self.baseline.plotter.camera = self.plan.plotter.camera  # linked cameras
        self.curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def show_results(self, baseline: tuple, plan: Optional[tuple] = None) -> None:
        """Draw ``(surface, centerlines, caption)`` for the baseline and (optionally) the plan."""
        self.baseline.show_vessel(*baseline)
        if plan is None:
            self.plan.show_vessel(None, None, "no plan yet")
        else:
            self.plan.show_vessel(*plan)
        self.plan.plotter.camera = self.baseline.plotter.camera
        self.plan.plotter.render()

    def show_3d(self, wall: Optional[pv.PolyData], caption: str = "") -> None:
        """Draw the 3D Navier-Stokes wall (point array ``FFR``) in its own pane; None hides the pane."""
        if wall is None:
            if self.flow3d is not None:
                self.flow3d.hide()
            return
        if self.flow3d is None:
            self.flow3d = _Pane("3D Navier-Stokes (baseline)")
            self.panes.addWidget(self.flow3d)
        self.flow3d.show()
        self.flow3d.show_vessel(wall, None, caption)
        self.flow3d.plotter.camera = self.baseline.plotter.camera
        self.flow3d.plotter.render()

    def plot_along(self, curves: dict[str, tuple[Sequence[float], Sequence[float]]], title: str = "") -> None:
        """FFR against distance from the inlet (mm), one line per named curve, with the 0.80 threshold."""
        self.curves = {k: (np.asarray(s, float), np.asarray(f, float)) for k, (s, f) in curves.items()}
        ax = self.axes
        ax.clear()
        for name, (s, f) in self.curves.items():
            ax.plot(s, f, label=name, lw=1.8)
        ax.axhline(FFR_THRESHOLD, color="#d62728", ls="--", lw=1.0, label="0.80")
        ax.set_ylim(min(FFR_RANGE[0], *(f.min() - 0.02 for _, f in self.curves.values())) if self.curves
                    else FFR_RANGE[0], 1.01)
        ax.set_xlabel("distance from inlet (mm)")
        ax.set_ylabel("FFR")
        if title:
            ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3)
        self.canvas.draw_idle()
