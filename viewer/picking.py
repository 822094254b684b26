"""Pick points on the surfaces of the 3D view (a cell picker on the pyvista plotter)."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import vtk


def world_to_display(plotter, point) -> tuple[float, float]:
    """Display coordinates (VTK pixels, origin bottom-left) of a world point (LPS mm)."""
    renderer = plotter.renderer
    renderer.SetWorldPoint(*[float(v) for v in point], 1.0)
    renderer.WorldToDisplay()
    x, y, _z = renderer.GetDisplayPoint()
    return x, y


def pick_surface(plotter, x: float, y: float, tolerance: float = 0.0005) -> Optional[np.ndarray]:
    """World position (LPS mm) of the visible surface under display pixel (x, y), or None.

    Only visible, pickable actors (surfaces) are hit; image slices and volumes are ignored.
    """
    picker = vtk.vtkCellPicker()
    picker.SetTolerance(tolerance)
    picker.PickFromListOn()
    for actor in plotter.renderer.GetActors():
        if actor.GetVisibility() and actor.GetPickable() and actor.GetMapper() is not None:
            picker.AddPickList(actor)
    if not picker.Pick(float(x), float(y), 0.0, plotter.renderer) or picker.GetCellId() < 0:
        return None
    return np.asarray(picker.GetPickPosition(), dtype=float)


class SurfacePicker:
    """While enabled, a left click (without drag) in the 3D view calls ``on_pick(position_lps)``.

    A drag still rotates the camera: the pick happens on release when the
    mouse moved less than ``click_px`` pixels.
    """

    def __init__(self, plotter, on_pick: Callable[[np.ndarray], None], click_px: int = 4) -> None:
        self.plotter = plotter
        self.on_pick = on_pick
        self.click_px = click_px
        self._observers: list[int] = []
        self._down: Optional[tuple[int, int]] = None

    @property
    def enabled(self) -> bool:
        return bool(self._observers)

    def set_enabled(self, enabled: bool) -> None:
        interactor = self.plotter.iren.interactor
        if enabled and not self._observers:
            self._observers = [interactor.AddObserver("LeftButtonPressEvent", self._press, 1.0),
                               interactor.AddObserver("LeftButtonReleaseEvent", self._release, 1.0)]
        elif not enabled:
            for tag in self._observers:
                interactor.RemoveObserver(tag)
            self._observers = []

    def _press(self, interactor, _event) -> None:
        self._down = interactor.GetEventPosition()

    def _release(self, interactor, _event) -> None:
        down, self._down = self._down, None
        x, y = interactor.GetEventPosition()
        if down is not None and abs(x - down[0]) + abs(y - down[1]) <= self.click_px:
            self.pick(x, y)

    def pick(self, x: float, y: float) -> Optional[np.ndarray]:
        """Pick at display pixel (x, y); calls ``on_pick`` on a hit and returns the point."""
        point = pick_surface(self.plotter, x, y)
        if point is not None:
            self.on_pick(point)
        return point
