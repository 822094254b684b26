"""3D gizmo for the planned bone move: a box around the segment, dragged to translate or rotate it.

A ``vtkBoxWidget2`` with scaling and face moves off, so every drag is a
rigid motion: drag the centre sphere (or the middle button anywhere in the
box) to translate, a face to rotate. The widget reports the rigid matrix
relative to where it was placed, which is exactly the planned move
x -> R x + b of the segment (LPS mm).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import vtk

from viewer.scene3d import Scene3D

MoveFn = Callable[[np.ndarray], None]


def _numpy_matrix(m: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


class SegmentGizmo:
    """The move gizmo in a ``Scene3D``.

    Parameters
    ----------
    scene : Scene3D
        The 3D view (its main renderer holds the gizmo).
    on_move : callable
        Called with the 4 x 4 rigid matrix while the user drags.
    on_release : callable
        Called when the user lets go.
    """

    def __init__(self, scene: Scene3D, on_move: MoveFn, on_release: Callable[[], None]) -> None:
        self.scene = scene
        self.on_move, self.on_release = on_move, on_release
        rep = vtk.vtkBoxRepresentation()
        rep.SetPlaceFactor(1.0)
        rep.GetOutlineProperty().SetColor(0.98, 0.80, 0.25)
        rep.GetOutlineProperty().SetLineWidth(2.0)
        rep.GetSelectedOutlineProperty().SetColor(1.0, 1.0, 1.0)
        rep.GetHandleProperty().SetColor(0.98, 0.80, 0.25)
        rep.SetHandleSize(rep.GetHandleSize() * 0.6)
        rep.OutlineCursorWiresOff()
        self.rep = rep
        widget = vtk.vtkBoxWidget2()
        widget.SetRepresentation(rep)
        widget.SetScalingEnabled(False)
        widget.SetMoveFacesEnabled(False)
        widget.SetRotationEnabled(True)
        widget.SetTranslationEnabled(True)
        widget.SetInteractor(scene.plotter.iren.interactor)
        widget.SetDefaultRenderer(scene.plotter.renderer)
        widget.SetCurrentRenderer(scene.plotter.renderer)
        widget.AddObserver("InteractionEvent", self._on_interaction)
        widget.AddObserver("EndInteractionEvent", self._on_end)
        self.widget = widget
        self.placed = False
        self.dragging = False

    def place(self, bounds: tuple[float, float, float, float, float, float]) -> None:
        """Put the box around ``bounds`` (xmin, xmax, ymin, ymax, zmin, zmax: the unmoved segment, mm)."""
        self.rep.PlaceWidget(list(map(float, bounds)))
        self.placed = True

    def set_enabled(self, enabled: bool) -> None:
        self.widget.SetEnabled(bool(enabled and self.placed))
        self.scene.request_render()

    @property
    def enabled(self) -> bool:
        return bool(self.widget.GetEnabled())

    def matrix(self) -> np.ndarray:
        """The rigid matrix the box is moved by now (4 x 4, relative to its placement)."""
        t = vtk.vtkTransform()
        self.rep.GetTransform(t)
        return _numpy_matrix(t.GetMatrix())

    def set_matrix(self, matrix: np.ndarray) -> None:
        """Move the box to ``matrix`` (relative to its placement) without reporting it."""
        if not self.placed or np.allclose(matrix, self.matrix(), atol=1e-9):
            return
        t = vtk.vtkTransform()
        t.SetMatrix(np.asarray(matrix, float).ravel())
        self.rep.SetTransform(t)
        self.scene.request_render()

    def centre_display(self) -> tuple[int, int]:
        """Display (pixel) position of the centre handle: where a translating drag starts."""
        centre = np.array(self.rep.GetBounds()).reshape(3, 2).mean(axis=1)
        ren = self.scene.plotter.renderer
        ren.SetWorldPoint(*centre, 1.0)
        ren.WorldToDisplay()
        x, y, _ = ren.GetDisplayPoint()
        return int(round(x)), int(round(y))

    def _on_interaction(self, *_args) -> None:
        self.dragging = True
        self.on_move(self.matrix())

    def _on_end(self, *_args) -> None:
        was = self.dragging
        self.dragging = False
        if was:
            self.on_release()

    def clear(self) -> None:
        self.widget.SetEnabled(False)
        self.placed = False
