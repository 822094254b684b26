"""Point markers (landmarks) drawn over a slice view, at their sub-voxel position."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QPainter, QPen

from viewer.slice_geometry import display_shape, index_to_display


def paint_markers(view, painter: QPainter, markers) -> None:
    """Draw ``(ijk, text, colour)`` markers lying in the shown slice (within half a voxel) of ``view``."""
    volume = view.volume
    if volume is None or not markers:
        return
    axes = view.axes
    rect = view.image_rect()
    rows, cols = display_shape(volume.dims_xyz, axes)
    for ijk, text, color in markers:
        if abs(ijk[axes.normal_axis] - view.index) > 0.5:
            continue
        row, col, _ = index_to_display(axes, volume.dims_xyz, tuple(np.rint(ijk).astype(int)))
        frac = ijk - np.rint(ijk)  # keep the sub-voxel position on screen
        col += -frac[axes.col_axis] if axes.col_flip else frac[axes.col_axis]
        row += -frac[axes.row_axis] if axes.row_flip else frac[axes.row_axis]
        c = QPointF(rect.x() + (col + 0.5) * rect.width() / cols, rect.y() + (row + 0.5) * rect.height() / rows)
        painter.setPen(QPen(QColor(color), 2))
        painter.drawEllipse(c, 4.0, 4.0)
        painter.drawText(c + QPointF(6.0, -6.0), text)
