"""One 2D slice view (axial, coronal or sagittal) of a CT with label overlays.

Plain Qt: each slice is windowed to grey in numpy, overlays are blended,
and the result is painted as a ``QImage`` scaled to the true mm aspect.

Mouse: left click/drag sets the crosshair point, right drag changes
window/level, wheel pages slices (Shift: 5 at a time), Ctrl+wheel zooms,
middle drag pans, double-click asks to maximise the view. Keys: Up/Down and
PgUp/PgDn page, Home/End jump to the ends, R resets zoom and pan.

A mouse tool (``set_tool``: a brush, a seed or landmark picker; see
``viewer.brush_tool.MouseTool``) takes over the left button while it is set;
Shift+left still moves the crosshair. Markers (``set_markers``: landmarks) are
drawn on the slices they lie in.
"""
from __future__ import annotations

import colorsys
import math
from typing import Optional

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from imaging.windowing import window_to_gray
from imaging.volume import LabelMap, Volume
from viewer.markers import paint_markers
from viewer.slice_geometry import (
    ViewAxes,
    display_shape,
    display_slice,
    display_to_index,
    index_to_display,
    pixel_spacing,
    slice_count,
    view_axes,
)

#: Colour of each view (title bar and the crosshair line of its plane), as in 3D Slicer.
VIEW_COLORS = {"axial": "#c8403c", "coronal": "#5aa532", "sagittal": "#e0c23c"}
_PLANE_OF_LPS_AXIS = {0: "sagittal", 1: "coronal", 2: "axial"}
OVERLAY_ALPHA = 0.45
PREVIEW_COLOR = (0.15, 0.95, 0.35)
PREVIEW_ALPHA = 0.45
Ijk = tuple[int, int, int]


def overlay_color(color) -> np.ndarray:
    """2D overlay colour (0..255) of a label colour: same hue, saturated.

    Label colours are chosen for shaded 3D surfaces (bone is cream); blended
    over grey CT they would vanish, so the overlay keeps the hue and raises
    saturation and value.
    """
    h, s, v = colorsys.rgb_to_hsv(*(float(c) for c in color))
    return 255.0 * np.asarray(colorsys.hsv_to_rgb(h, max(s, 0.75), max(v, 0.9)))


class _Canvas(QWidget):
    """Paint surface of a SliceView; forwards events to it."""

    def __init__(self, view: "SliceView") -> None:
        super().__init__(view)
        self._view = view
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setMinimumSize(120, 120)
        self.setAttribute(Qt.WA_OpaquePaintEvent)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        painter = QPainter(self)
        try:
            self._view._paint(painter, self.rect())
        finally:
            painter.end()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self._view._mouse_press(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        self._view._mouse_move(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        self._view._mouse_release(event)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self._view.double_clicked.emit()

    def wheelEvent(self, event) -> None:  # noqa: N802
        self._view._wheel(event)

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._view._hover_pos = None
        self._view.hovered.emit(None)
        self.update()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if not self._view._key(event):
            super().keyPressEvent(event)


class SliceView(QWidget):
    """A titled slice view with its own slider.

    Parameters
    ----------
    view : str
        ``"axial"``, ``"coronal"`` or ``"sagittal"``.

    Signals
    -------
    slice_changed(int)
        The user paged to another slice (slider, wheel, keys).
    point_picked(tuple)
        Left click/drag at voxel (i, j, k).
    hovered(object)
        Voxel (i, j, k) under the mouse, or None when outside the image.
    window_level_changed(float, float)
        Right-drag changed (window, level), HU.
    double_clicked()
        The user double-clicked the image.
    """

    slice_changed = Signal(int)
    point_picked = Signal(object)
    hovered = Signal(object)
    window_level_changed = Signal(float, float)
    double_clicked = Signal()

    def __init__(self, view: str, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.view = view
        self.setObjectName(f"slice_view_{view}")
        self._volume: Optional[Volume] = None
        self._axes: ViewAxes = view_axes(view, np.eye(3))
        self._index = 0
        self._point: Optional[Ijk] = None
        self._window, self._level = 400.0, 40.0
        self._labels: list[LabelMap] = []
        self._preview: Optional[tuple[float, float]] = None
        self._zoom = 1.0
        self._pan = QPointF(0.0, 0.0)
        self._drag: Optional[tuple] = None
        self._wheel_rest = 0
        self._image: Optional[QImage] = None
        self._tool = None  # a viewer.brush_tool.MouseTool, or None
        self._hover_pos: Optional[QPointF] = None
        self._markers: list[tuple[np.ndarray, str, str]] = []

        color = VIEW_COLORS[view]
        title = QLabel(view.capitalize())
        title.setStyleSheet(f"background:{color}; color:black; font-weight:bold; padding:1px 6px;")
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setObjectName(f"slider_{view}")
        self.slider.setEnabled(False)
        self.slider.setToolTip(f"{view.capitalize()} slice (wheel or Up/Down over the image)")
        self.slider.valueChanged.connect(self._on_slider)
        self.index_label = QLabel("-")
        self.index_label.setMinimumWidth(64)
        self.index_label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 4, 0)
        bar.setSpacing(6)
        bar.addWidget(title)
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.index_label)
        self.canvas = _Canvas(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(1, 1, 1, 1)
        layout.setSpacing(1)
        layout.addLayout(bar)
        layout.addWidget(self.canvas, 1)

    # -- state -------------------------------------------------------------
    @property
    def index(self) -> int:
        """Current slice along the view normal (index along the normal voxel axis)."""
        return self._index

    @property
    def axes(self) -> ViewAxes:
        return self._axes

    def set_volume(self, volume: Optional[Volume]) -> None:
        """Show a new volume (or none), at its middle slice, zoom reset."""
        self._volume = volume
        self._labels = []
        self._preview = None
        self._point = None
        self._zoom, self._pan = 1.0, QPointF(0.0, 0.0)
        self.slider.blockSignals(True)
        if volume is None:
            self.slider.setEnabled(False)
            self.slider.setRange(0, 0)
            self._index = 0
        else:
            self._axes = view_axes(self.view, volume.geometry.direction)
            n = slice_count(volume.dims_xyz, self._axes)
            self._index = n // 2
            self.slider.setRange(0, n - 1)
            self.slider.setValue(self._index)
            self.slider.setEnabled(True)
        self.slider.blockSignals(False)
        self._refresh()

    def set_slice(self, index: int) -> None:
        """Show slice ``index`` (clamped) without emitting ``slice_changed``."""
        if self._volume is None:
            return
        index = max(0, min(int(index), self.slider.maximum()))
        self.slider.blockSignals(True)
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        if index != self._index:
            self._index = index
            self._refresh()

    def set_point(self, ijk: Optional[Ijk]) -> None:
        """Crosshair point; the view pages to the point's slice."""
        self._point = None if ijk is None else tuple(int(v) for v in ijk)
        if self._point is not None:
            self.set_slice(self._point[self._axes.normal_axis])
        self.canvas.update()

    def set_window_level(self, window: float, level: float) -> None:
        """Grey mapping: ``level`` +- ``window``/2 HU maps to black..white."""
        self._window, self._level = max(float(window), 1.0), float(level)
        self._refresh()

    def window_level(self) -> tuple[float, float]:
        return self._window, self._level

    def set_labels(self, labels: list[LabelMap]) -> None:
        """Label maps to overlay (on the volume's grid; others are skipped)."""
        shape = None if self._volume is None else self._volume.array.shape
        self._labels = [lab for lab in labels if lab.array.shape == shape]
        self._refresh()

    def set_preview(self, hu_range: Optional[tuple[float, float]]) -> None:
        """Live threshold overlay of voxels within ``hu_range`` (None: off)."""
        self._preview = None if hu_range is None else (float(hu_range[0]), float(hu_range[1]))
        self._refresh()

    def reset_zoom(self) -> None:
        self._zoom, self._pan = 1.0, QPointF(0.0, 0.0)
        self.canvas.update()

    def refresh(self) -> None:
        """Redraw after the shown label maps were edited in place."""
        self._refresh()

    @property
    def volume(self) -> Optional[Volume]:
        return self._volume

    @property
    def tool(self):
        return self._tool

    def set_tool(self, tool) -> None:
        """Give the left button to ``tool`` (a ``MouseTool``); None gives it back to the crosshair."""
        if self._drag is not None and self._drag[0] == "tool" and self._tool is not None:
            self._tool.release(self, None)
        self._drag = None
        self._tool = tool
        self.canvas.setCursor(Qt.CrossCursor if tool is not None else Qt.ArrowCursor)
        self.canvas.update()

    def set_markers(self, markers) -> None:
        """Points to draw: ``(ijk, text, colour)`` with continuous voxel indices (i, j, k)."""
        self._markers = [(np.asarray(ijk, dtype=float), str(text), str(color)) for ijk, text, color in markers]
        self.canvas.update()

    def pixel_size_mm(self) -> float:
        """Screen pixels per mm at the current zoom (0 without a volume)."""
        if self._volume is None:
            return 0.0
        _rows, cols = display_shape(self._volume.dims_xyz, self._axes)
        _row_mm, col_mm = pixel_spacing(self._volume.geometry.spacing_xyz, self._axes)
        return self.image_rect().width() / (cols * col_mm)

    # -- rendering ---------------------------------------------------------
    def displayed_rgb(self) -> Optional[np.ndarray]:
        """The current slice as shown (rows x columns x RGB uint8), before scaling."""
        if self._volume is None:
            return None
        plane = display_slice(self._volume.array, self._axes, self._index)
        gray = window_to_gray(plane, self._window, self._level)
        if not self._labels and self._preview is None:
            return np.repeat(gray[..., None], 3, axis=2)
        rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
        for lab in self._labels:
            lab_plane = display_slice(lab.array, self._axes, self._index)
            for value, info in lab.labels.items():
                mask = lab_plane == value
                if mask.any():
                    rgb[mask] = (1 - OVERLAY_ALPHA) * rgb[mask] + OVERLAY_ALPHA * overlay_color(info.color)
        if self._preview is not None:
            lo, hi = self._preview
            mask = (plane >= lo) & (plane <= hi)
            rgb[mask] = (1 - PREVIEW_ALPHA) * rgb[mask] + PREVIEW_ALPHA * 255.0 * np.asarray(PREVIEW_COLOR)
        return rgb.astype(np.uint8)

    def _refresh(self) -> None:
        rgb = self.displayed_rgb()
        if rgb is None:
            self._image = None
            self.index_label.setText("-")
        else:
            rgb = np.ascontiguousarray(rgb)
            h, w, _ = rgb.shape
            self._image = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
            self.index_label.setText(f"{self._index + 1} / {self.slider.maximum() + 1}")
        self.canvas.update()

    def image_rect(self) -> QRectF:
        """Where the slice is drawn in canvas coordinates (true mm aspect)."""
        if self._volume is None:
            return QRectF()
        rows, cols = display_shape(self._volume.dims_xyz, self._axes)
        row_mm, col_mm = pixel_spacing(self._volume.geometry.spacing_xyz, self._axes)
        width_mm, height_mm = cols * col_mm, rows * row_mm
        area = self.canvas.rect()
        scale = min(area.width() / width_mm, area.height() / height_mm) * self._zoom
        w, h = width_mm * scale, height_mm * scale
        x0 = (area.width() - w) / 2 + self._pan.x()
        y0 = (area.height() - h) / 2 + self._pan.y()
        return QRectF(x0, y0, w, h)

    def voxel_at(self, pos: QPointF) -> Optional[Ijk]:
        """Voxel (i, j, k) under a canvas position, or None outside the image."""
        if self._volume is None:
            return None
        rect = self.image_rect()
        rows, cols = display_shape(self._volume.dims_xyz, self._axes)
        col = math.floor((pos.x() - rect.x()) / rect.width() * cols)
        row = math.floor((pos.y() - rect.y()) / rect.height() * rows)
        if not (0 <= row < rows and 0 <= col < cols):
            return None
        return display_to_index(self._axes, self._volume.dims_xyz, row, col, self._index)

    def canvas_position(self, ijk: Ijk) -> QPointF:
        """Canvas position of the centre of voxel ``ijk`` (in-plane)."""
        rect = self.image_rect()
        rows, cols = display_shape(self._volume.dims_xyz, self._axes)
        row, col, _ = index_to_display(self._axes, self._volume.dims_xyz, ijk)
        return QPointF(rect.x() + (col + 0.5) * rect.width() / cols,
                       rect.y() + (row + 0.5) * rect.height() / rows)

    def _paint(self, painter: QPainter, area) -> None:
        painter.fillRect(area, QColor("#000000"))
        font = QFont(painter.font())
        font.setPointSize(9)
        painter.setFont(font)
        if self._image is None:
            painter.setPen(QColor("#808080"))
            painter.drawText(area, Qt.AlignCenter, "No image\nOpen a scan (Ctrl+O) or drop a folder here")
            return
        painter.setRenderHint(QPainter.SmoothPixmapTransform, True)
        painter.drawImage(self.image_rect(), self._image)
        painter.setRenderHint(QPainter.Antialiasing, True)
        if self._point is not None:
            self._paint_crosshair(painter)
        paint_markers(self, painter, self._markers)
        if self._tool is not None and self._hover_pos is not None:
            self._tool.paint(self, painter, self._hover_pos)
        self._paint_annotations(painter, area)

    def _paint_crosshair(self, painter: QPainter) -> None:
        rect = self.image_rect()
        c = self.canvas_position(self._point)
        gap = 8.0
        vertical = QColor(VIEW_COLORS[_PLANE_OF_LPS_AXIS[self._axes.right_lps_axis]])
        horizontal = QColor(VIEW_COLORS[_PLANE_OF_LPS_AXIS[self._axes.down_lps_axis]])
        painter.setPen(QPen(vertical, 1))
        painter.drawLine(QPointF(c.x(), rect.top()), QPointF(c.x(), c.y() - gap))
        painter.drawLine(QPointF(c.x(), c.y() + gap), QPointF(c.x(), rect.bottom()))
        painter.setPen(QPen(horizontal, 1))
        painter.drawLine(QPointF(rect.left(), c.y()), QPointF(c.x() - gap, c.y()))
        painter.drawLine(QPointF(c.x() + gap, c.y()), QPointF(rect.right(), c.y()))

    def _paint_annotations(self, painter: QPainter, area) -> None:
        box = QRectF(area).adjusted(6, 4, -6, -4)
        painter.setPen(QColor("#f0d070"))
        letters = self._axes.letters
        painter.drawText(box, Qt.AlignLeft | Qt.AlignVCenter, letters["left"])
        painter.drawText(box, Qt.AlignRight | Qt.AlignVCenter, letters["right"])
        painter.drawText(box, Qt.AlignHCenter | Qt.AlignTop, letters["top"])
        painter.drawText(box, Qt.AlignHCenter | Qt.AlignBottom, letters["bottom"])
        painter.setPen(QColor("#e6e6e6"))
        n = self.slider.maximum() + 1
        painter.drawText(box, Qt.AlignLeft | Qt.AlignTop,
                         f"{self.view.capitalize()}\nIm {self._index + 1}/{n}\n{self._slice_position_text()}")
        painter.drawText(box, Qt.AlignLeft | Qt.AlignBottom, f"W {self._window:.0f}  L {self._level:.0f}")
        if abs(self._zoom - 1.0) > 1e-3:
            painter.drawText(box, Qt.AlignRight | Qt.AlignBottom, f"Zoom {self._zoom:.2f}x")

    def _slice_position_text(self) -> str:
        """Position of the slice along its LPS normal, e.g. ``S 702.5 mm``."""
        ijk = [0, 0, 0]
        ijk[self._axes.normal_axis] = self._index
        lps = self._volume.geometry.index_to_lps() @ np.array([*ijk, 1.0])
        normal_lps = {"axial": 2, "coronal": 1, "sagittal": 0}[self.view]
        value = lps[normal_lps]
        pos, neg = {0: ("L", "R"), 1: ("P", "A"), 2: ("S", "I")}[normal_lps]
        return f"{pos if value >= 0 else neg} {abs(value):.1f} mm"

    # -- interaction -------------------------------------------------------
    def _on_slider(self, value: int) -> None:
        if value != self._index:
            self._index = value
            self._refresh()
            self.slice_changed.emit(value)

    def page(self, delta: int) -> None:
        """Move ``delta`` slices (as the wheel does); emits ``slice_changed``."""
        if self._volume is not None:
            self.slider.setValue(max(0, min(self._index + int(delta), self.slider.maximum())))

    def _mouse_press(self, event) -> None:
        pos = event.position()
        button = event.button()
        if (button == Qt.LeftButton and self._tool is not None
                and not event.modifiers() & Qt.ShiftModifier and self.voxel_at(pos) is not None):
            self._drag = ("tool",)
            self._tool.press(self, pos)
        elif button == Qt.LeftButton:
            self._drag = ("pick",)
            self._pick(pos)
        elif button == Qt.RightButton:
            self._drag = ("wl", pos, self._window, self._level)
        elif button == Qt.MiddleButton:
            self._drag = ("pan", pos, QPointF(self._pan))

    def _mouse_move(self, event) -> None:
        pos = event.position()
        self.hovered.emit(self.voxel_at(pos))
        if self._tool is not None:
            self._hover_pos = pos
            self.canvas.update()
        if self._drag is None:
            return
        if self._drag[0] == "tool":
            self._tool.move(self, pos)
        elif self._drag[0] == "pick":
            self._pick(pos)
        elif self._drag[0] == "wl":
            _, start, w0, l0 = self._drag
            step = max(w0, 10.0) / 250.0
            window = max(1.0, w0 + (pos.x() - start.x()) * step)
            level = l0 + (pos.y() - start.y()) * step
            self.set_window_level(window, level)
            self.window_level_changed.emit(window, level)
        elif self._drag[0] == "pan":
            _, start, pan0 = self._drag
            self._pan = pan0 + (pos - start)
            self.canvas.update()

    def _mouse_release(self, event) -> None:
        drag, self._drag = self._drag, None
        if drag is not None and drag[0] == "tool" and self._tool is not None:
            self._tool.release(self, event.position())

    def _pick(self, pos: QPointF) -> None:
        ijk = self.voxel_at(pos)
        if ijk is not None:
            self.point_picked.emit(ijk)

    def _wheel(self, event) -> None:
        # Some platforms turn Shift+wheel into a horizontal wheel.
        delta = event.angleDelta().y() or event.angleDelta().x()
        if event.modifiers() & Qt.ControlModifier:
            self._zoom = max(0.25, min(self._zoom * (1.15 ** (delta / 120.0)), 16.0))
            self.canvas.update()
            return
        # Touchpads send many small deltas: page once per accumulated notch (120).
        self._wheel_rest += delta
        notches = int(self._wheel_rest / 120)
        if notches:
            self._wheel_rest -= notches * 120
            self.page(notches * (5 if event.modifiers() & Qt.ShiftModifier else 1))

    def _key(self, event) -> bool:
        key = event.key()
        moves = {Qt.Key_Up: 1, Qt.Key_Down: -1, Qt.Key_PageUp: 5, Qt.Key_PageDown: -5}
        if key in moves:
            self.page(moves[key])
        elif key == Qt.Key_Home:
            self.page(-self._index)
        elif key == Qt.Key_End:
            self.page(self.slider.maximum() - self._index)
        elif key == Qt.Key_R:
            self.reset_zoom()
        else:
            return False
        return True
