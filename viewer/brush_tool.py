"""Mouse tools for the slice views: a brush that reports dabs, and a point picker.

A tool gets the left button of a ``SliceView`` (``SliceView.set_tool``):
``press``/``move``/``release`` with canvas positions, and ``paint`` to draw
its cursor. Tools know nothing of cases or labels: they turn mouse positions
into patient positions (LPS mm) and call back; ``app/ui`` does the editing.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QPainter, QPen

from viewer.slice_geometry import display_shape


def continuous_index(view, pos: QPointF) -> Optional[np.ndarray]:
    """Continuous voxel index (i, j, k) under a canvas position (voxel centres are integers).

    The coordinate along the view normal is the shown slice. None outside the image.
    """
    volume = view.volume
    if volume is None or view.voxel_at(pos) is None:
        return None
    axes = view.axes
    dims = volume.dims_xyz
    rect = view.image_rect()
    rows, cols = display_shape(dims, axes)
    col = (pos.x() - rect.x()) / rect.width() * cols - 0.5
    row = (pos.y() - rect.y()) / rect.height() * rows - 0.5
    ijk = np.zeros(3)
    ijk[axes.normal_axis] = view.index
    ijk[axes.row_axis] = dims[axes.row_axis] - 1 - row if axes.row_flip else row
    ijk[axes.col_axis] = dims[axes.col_axis] - 1 - col if axes.col_flip else col
    return ijk


def index_to_lps(view, ijk) -> np.ndarray:
    """LPS position (mm) of a continuous voxel index of the view's volume."""
    return (view.volume.geometry.index_to_lps() @ np.array([*ijk, 1.0]))[:3]


class MouseTool:
    """Base class: a tool does nothing until it overrides these.

    ``deactivate`` is called when another tool (or none) takes the views.
    """

    name = "tool"

    def press(self, view, pos: QPointF) -> None:
        pass

    def move(self, view, pos: QPointF) -> None:
        pass

    def release(self, view, pos: Optional[QPointF]) -> None:
        pass

    def paint(self, view, painter: QPainter, pos: QPointF) -> None:
        pass

    def deactivate(self) -> None:
        pass


class PointTool(MouseTool):
    """Calls ``on_point(view_name, ijk, lps)`` with the voxel clicked (its centre, LPS mm)."""

    def __init__(self, name: str, on_point: Callable[[str, tuple, np.ndarray], None],
                 on_deactivate: Optional[Callable[[], None]] = None) -> None:
        self.name = name
        self._on_point = on_point
        self._on_deactivate = on_deactivate

    def press(self, view, pos: QPointF) -> None:
        ijk = view.voxel_at(pos)
        if ijk is not None:
            self._on_point(view.view, ijk, index_to_lps(view, ijk))

    def deactivate(self) -> None:
        if self._on_deactivate is not None:
            self._on_deactivate()


class BrushTool(MouseTool):
    """A round brush of ``radius_mm``: reports dab centres (LPS mm) along the stroke.

    Dabs are spaced at most a quarter radius apart along the mouse path, so a
    drag paints a continuous band (its edge deviates from the exact swept
    disk by under radius/128).

    Parameters
    ----------
    on_begin : callable(view_name)
        A stroke starts in that view.
    on_dab : callable(view_name, centre_lps)
        Paint one disk or sphere at this centre.
    on_end : callable()
        The stroke ended (mouse released or tool changed).
    """

    def __init__(self, name: str, radius_mm: float, on_begin, on_dab, on_end,
                 color: str = "#ffd23c", on_deactivate: Optional[Callable[[], None]] = None) -> None:
        self.name = name
        self.radius_mm = float(radius_mm)
        self.color = color
        self._on_begin, self._on_dab, self._on_end = on_begin, on_dab, on_end
        self._on_deactivate = on_deactivate
        self._last: Optional[np.ndarray] = None  # previous dab, continuous index
        self._stroke_view: Optional[str] = None

    def press(self, view, pos: QPointF) -> None:
        ijk = continuous_index(view, pos)
        if ijk is None:
            return
        self._stroke_view = view.view
        self._on_begin(view.view)
        self._dab(view, ijk)
        self._last = ijk

    def move(self, view, pos: QPointF) -> None:
        if self._last is None or view.view != self._stroke_view:
            return
        ijk = continuous_index(view, pos)
        if ijk is None:
            return
        spacing = np.asarray(view.volume.geometry.spacing_xyz, dtype=float)
        step_mm = np.linalg.norm((ijk - self._last) * spacing)
        n = max(1, int(math.ceil(step_mm / max(self.radius_mm / 4.0, 1e-3))))
        for t in np.arange(1, n + 1) / n:
            self._dab(view, self._last + t * (ijk - self._last))
        self._last = ijk

    def release(self, view, pos: Optional[QPointF]) -> None:
        if self._last is None:
            return
        self._last = None
        self._stroke_view = None
        self._on_end()

    def _dab(self, view, ijk: np.ndarray) -> None:
        self._on_dab(view.view, index_to_lps(view, ijk))

    def paint(self, view, painter: QPainter, pos: QPointF) -> None:
        """Outline of the brush at the mouse, true size in mm."""
        if view.volume is None:
            return
        r = self.radius_mm * view.pixel_size_mm()
        painter.setPen(QPen(QColor(self.color), 1.5))
        painter.drawEllipse(pos, r, r)

    def deactivate(self) -> None:
        self.release(None, None)
        if self._on_deactivate is not None:
            self._on_deactivate()
