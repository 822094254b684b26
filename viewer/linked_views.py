"""Link the three slice views: one crosshair point, one window/level, same overlays.

The crosshair point *is* the three slice positions: paging the axial view
moves the point along the axial normal, and a click in any view moves it
in-plane, so the other two views page to it.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, Signal

from imaging.volume import LabelMap, Volume
from viewer.slice_view import SliceView
from viewer.slice_geometry import VIEWS

Ijk = tuple[int, int, int]


class LinkedSliceViews(QObject):
    """Keeps an axial, a coronal and a sagittal ``SliceView`` in step.

    Signals
    -------
    point_changed(tuple)
        The crosshair moved to voxel (i, j, k).
    window_level_changed(float, float)
        Window/level changed by mouse in a view, HU.
    hovered(object)
        Voxel (i, j, k) under the mouse in any view, or None.
    """

    point_changed = Signal(object)
    window_level_changed = Signal(float, float)
    hovered = Signal(object)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.views: dict[str, SliceView] = {name: SliceView(name) for name in VIEWS}
        self._volume: Optional[Volume] = None
        self._point: Optional[Ijk] = None
        for view in self.views.values():
            view.slice_changed.connect(lambda index, v=view: self._on_paged(v, index))
            view.point_picked.connect(self.set_point)
            view.window_level_changed.connect(self._on_window_level)
            view.hovered.connect(self.hovered)

    @property
    def volume(self) -> Optional[Volume]:
        return self._volume

    @property
    def point(self) -> Optional[Ijk]:
        """Crosshair voxel (i, j, k), None without a volume."""
        return self._point

    def set_volume(self, volume: Optional[Volume]) -> None:
        """Show a volume in all views with the crosshair at its centre."""
        self._volume = volume
        for view in self.views.values():
            view.set_volume(volume)
        self._point = None
        if volume is not None:
            self.set_point(tuple(d // 2 for d in volume.dims_xyz))

    def set_point(self, ijk: Ijk) -> None:
        """Move the crosshair to voxel (i, j, k) (clamped to the grid)."""
        if self._volume is None:
            return
        dims = self._volume.dims_xyz
        ijk = tuple(max(0, min(int(v), d - 1)) for v, d in zip(ijk, dims))
        if ijk == self._point:
            return
        self._point = ijk
        for view in self.views.values():
            view.set_point(ijk)
        self.point_changed.emit(ijk)

    def _on_paged(self, view: SliceView, index: int) -> None:
        if self._point is None:
            return
        ijk = list(self._point)
        ijk[view.axes.normal_axis] = index
        self.set_point(tuple(ijk))

    def set_window_level(self, window: float, level: float) -> None:
        """Apply a window/level (HU) to all views."""
        for view in self.views.values():
            view.set_window_level(window, level)

    def window_level(self) -> tuple[float, float]:
        return self.views["axial"].window_level()

    def _on_window_level(self, window: float, level: float) -> None:
        for view in self.views.values():
            if view.window_level() != (window, level):
                view.set_window_level(window, level)
        self.window_level_changed.emit(window, level)

    def set_labels(self, labels: list[LabelMap]) -> None:
        """Label maps overlaid in all views."""
        for view in self.views.values():
            view.set_labels(labels)

    def set_preview(self, hu_range: Optional[tuple[float, float]]) -> None:
        """Live threshold overlay in all views (None: off)."""
        for view in self.views.values():
            view.set_preview(hu_range)

    def refresh(self) -> None:
        """Redraw all views after the shown label maps were edited in place."""
        for view in self.views.values():
            view.refresh()

    @property
    def tool(self):
        """The mouse tool holding the left button, or None."""
        return self.views["axial"].tool

    def set_tool(self, tool) -> None:
        """Give the left button of every view to a mouse tool (None: crosshair).

        The tool it replaces is told (``deactivate``) so its panel can untick itself.
        """
        old = self.tool
        for view in self.views.values():
            view.set_tool(tool)
        if old is not None and old is not tool:
            old.deactivate()

    def set_markers(self, markers) -> None:
        """Markers ``(ijk, text, colour)`` drawn in every view (see ``SliceView.set_markers``)."""
        for view in self.views.values():
            view.set_markers(markers)
