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


def display_to_ndc_matrix(plotter) -> np.ndarray:
    """4x4 matrix taking world points (LPS mm, homogeneous) to the view's normalised coordinates.

    After dividing by w, x and y run from -1 to 1 across the render window,
    as :func:`display_to_ndc` maps lasso pixels; this is the camera's
    composite projection (perspective or parallel).
    """
    renderer = plotter.renderer
    camera = renderer.GetActiveCamera()
    m = camera.GetCompositeProjectionTransformMatrix(renderer.GetTiledAspectRatio(), -1.0, 1.0)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def display_to_ndc(plotter, points_xy) -> np.ndarray:
    """Display pixels (VTK, origin bottom-left) to normalised view coordinates (-1..1)."""
    renderer = plotter.renderer
    x0, y0, x1, y1 = renderer.GetViewport()
    w, h = plotter.render_window.GetSize()
    p = np.asarray(points_xy, dtype=float).reshape(-1, 2)
    return np.column_stack([2.0 * (p[:, 0] - x0 * w) / ((x1 - x0) * w) - 1.0,
                            2.0 * (p[:, 1] - y0 * h) / ((y1 - y0) * h) - 1.0])


class LassoTool:
    """While enabled, a left drag in the 3D view draws a closed polygon instead of rotating.

    On release ``on_polygon(points_display_xy)`` is called with the polygon
    (VTK display pixels, at least 3 points). The outline is drawn as a 2D
    overlay while dragging.
    """

    def __init__(self, plotter, on_polygon: Callable[[np.ndarray], None]) -> None:
        self.plotter = plotter
        self.on_polygon = on_polygon
        self._observers: list[int] = []
        self._points: Optional[list[tuple[int, int]]] = None
        self._outline = vtk.vtkPolyData()
        mapper = vtk.vtkPolyDataMapper2D()
        mapper.SetInputData(self._outline)
        self._actor = vtk.vtkActor2D()
        self._actor.SetMapper(mapper)
        self._actor.GetProperty().SetColor(1.0, 0.82, 0.24)
        self._actor.GetProperty().SetLineWidth(2.0)

    @property
    def enabled(self) -> bool:
        return bool(self._observers)

    def set_enabled(self, enabled: bool) -> None:
        interactor = self.plotter.iren.interactor
        if enabled and not self._observers:
            self._observers = [interactor.AddObserver(event, handler, 10.0) for event, handler in (
                ("LeftButtonPressEvent", self._press), ("MouseMoveEvent", self._move),
                ("LeftButtonReleaseEvent", self._release))]
        elif not enabled:
            for tag in self._observers:
                interactor.RemoveObserver(tag)
            self._observers = []
            self._points = None
            self.plotter.renderer.RemoveViewProp(self._actor)

    def _abort(self, interactor) -> None:
        # Stop the camera style from seeing the event (the drag draws, it does not rotate).
        for tag in self._observers:
            command = interactor.GetCommand(tag)
            if command is not None:
                command.SetAbortFlag(1)

    def _press(self, interactor, _event) -> None:
        self._points = [interactor.GetEventPosition()]
        self.plotter.renderer.AddViewProp(self._actor)
        self._abort(interactor)

    def _move(self, interactor, _event) -> None:
        if self._points is None:
            return
        self._points.append(interactor.GetEventPosition())
        self._draw()
        self._abort(interactor)

    def _release(self, interactor, _event) -> None:
        if self._points is None:
            return
        points, self._points = self._points, None
        self.plotter.renderer.RemoveViewProp(self._actor)
        self._abort(interactor)
        self.plotter.render()
        if len(points) >= 3:
            self.on_polygon(np.asarray(points, dtype=float))

    def _draw(self) -> None:
        pts = vtk.vtkPoints()
        for x, y in self._points:
            pts.InsertNextPoint(float(x), float(y), 0.0)
        line = vtk.vtkCellArray()
        line.InsertNextCell(len(self._points) + 1)
        for i in range(len(self._points)):
            line.InsertCellPoint(i)
        line.InsertCellPoint(0)
        self._outline.SetPoints(pts)
        self._outline.SetLines(line)
        self._outline.Modified()
        self.plotter.render()
