"""Soft-tissue plan in the 3D view: predicted skin by displacement, original skin, moved segment.

The predicted skin keeps one actor and one mesh for the whole session: every
move only rewrites its points, normals and displacement values, so dragging a
slider costs a render, not a new actor.

The FE skin is the boundary of a voxel-conforming tet mesh: a staircase at the
element size. For display it can be smoothed once (windowed sinc, which keeps
every point); each point is then drawn at its smoothed place plus its
predicted displacement. Colours, numbers and what is stored are the FE values.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyvista as pv
import vtk

from viewer.scene3d import Scene3D, vtk_matrix

SCALARS = "displacement_norm_mm"
BAR_TITLE = "Skin\ndisplacement\n(mm)"
CMAP = "YlOrRd"  # 0 mm pale (reads as skin), large moves dark red
SKIN_COLOR = (0.93, 0.78, 0.66)
SEGMENT_COLOR = (0.98, 0.80, 0.25)
#: What the view shows: the predicted skin and moved segment, or both before the move.
MODES = ("after", "before")


def _point_normals(surface: pv.PolyData) -> np.ndarray:
    """Unit point normals (n_points, 3) from the faces as wound; point order is kept."""
    return np.asarray(surface.compute_normals(cell_normals=False, split_vertices=False,
                                              consistent_normals=False)["Normals"])


def _outward_faces(surface: pv.PolyData) -> np.ndarray:
    """Faces of a triangle surface wound consistently, normals pointing outward.

    Tet-mesh boundary faces come in any winding; mixed windings shade as dark
    patches. Outward: away from the centroid on average (the skin is an open,
    roughly convex shell, so a closed-surface orientation test does not apply).
    """
    oriented = surface.compute_normals(cell_normals=False, split_vertices=False, consistent_normals=True)
    faces = np.asarray(oriented.faces).reshape(-1, 4).copy()
    outward = np.sum((oriented.points - oriented.points.mean(axis=0)) * oriented["Normals"], axis=1)
    if outward.mean() < 0:
        faces[:, [2, 3]] = faces[:, [3, 2]]
    return faces.ravel()


def smoothing_offsets(surface: pv.PolyData, iterations: int = 30) -> np.ndarray:
    """Per-point shift (n_points, 3) mm from the FE staircase to a smooth display surface."""
    smooth = surface.smooth_taubin(n_iter=iterations, pass_band=0.05, boundary_smoothing=False,
                                   non_manifold_smoothing=True, normalize_coordinates=True)
    return np.asarray(smooth.points) - np.asarray(surface.points)


class PlanOverlay:
    """The plan's actors in a ``Scene3D``.

    Parameters
    ----------
    scene : Scene3D
        The 3D view to draw into.
    """

    def __init__(self, scene: Scene3D) -> None:
        self.scene = scene
        self.skin_actor: Optional[vtk.vtkActor] = None
        self.original_actor: Optional[vtk.vtkActor] = None
        self.segment_actor: Optional[vtk.vtkActor] = None
        self._skin: Optional[pv.PolyData] = None
        self._original: Optional[pv.PolyData] = None
        self._offsets: Optional[np.ndarray] = None  # display smoothing, per point
        self._predicted: Optional[pv.PolyData] = None
        self._base_points: Optional[np.ndarray] = None
        self._smooth = True
        self._matrix = np.eye(4)
        self.mode = "after"
        self.opacity = 1.0

    @property
    def plotter(self):
        return self.scene.plotter

    def show_skin(self, original: pv.PolyData, smooth: bool = True) -> None:
        """Start a plan: draw the skin before the move (zero displacement everywhere)."""
        self.clear()
        faces = _outward_faces(original)
        base = pv.PolyData(np.array(original.points), faces)
        self._offsets = smoothing_offsets(base)
        self._smooth = bool(smooth)
        shown = base.points + (self._offsets if self._smooth else 0.0)
        skin = pv.PolyData(shown, faces.copy())
        normals = _point_normals(skin)
        skin[SCALARS] = np.zeros(skin.n_points)
        skin.point_data["Normals"] = normals
        skin.point_data.active_normals_name = "Normals"
        skin.set_active_scalars(SCALARS)
        self._skin = skin
        bar = {"title": BAR_TITLE, "vertical": True, "position_x": 0.06, "position_y": 0.3,
               "height": 0.5, "width": 0.07, "fmt": "%.1f", "n_labels": 5, "color": "#e2e2e6",
               "title_font_size": 13, "label_font_size": 12}
        self.skin_actor = self.plotter.add_mesh(
            skin, scalars=SCALARS, cmap=CMAP, clim=(0.0, 1.0), scalar_bar_args=bar,
            specular=0.2, specular_power=15, name="plan_skin", reset_camera=False, render=False)
        self.skin_actor.GetProperty().SetInterpolationToGouraud()
        ghost = pv.PolyData(shown.copy(), faces.copy())
        ghost.point_data["Normals"] = normals
        ghost.point_data.active_normals_name = "Normals"
        self._original = ghost
        self._base_points = np.array(base.points)
        self.original_actor = self.plotter.add_mesh(
            ghost, color=SKIN_COLOR, specular=0.2, name="plan_skin_original", reset_camera=False, render=False)
        self.original_actor.GetProperty().SetInterpolationToGouraud()
        self._apply_mode()

    def set_smooth(self, smooth: bool) -> None:
        """Draw the skin smoothed (True) or as the FE staircase (False)."""
        if self._skin is None or bool(smooth) == self._smooth:
            return
        self._smooth = bool(smooth)
        self._original.points = self._base_points + (self._offsets if self._smooth else 0.0)
        self._original.point_data["Normals"] = _point_normals(self._original)
        self._original.Modified()
        predicted = self._predicted
        if predicted is None:
            predicted = pv.PolyData(self._base_points.copy())
            predicted[SCALARS] = np.zeros(predicted.n_points)
        self.update_skin(predicted)

    def update_skin(self, predicted: pv.PolyData) -> None:
        """New prediction for the same skin (same points, same order): rewrite it in place."""
        if self._skin is None:
            return
        self._predicted = predicted
        skin = self._skin
        skin.points = np.asarray(predicted.points) + (self._offsets if self._smooth else 0.0)
        skin.point_data[SCALARS] = np.asarray(predicted[SCALARS])
        skin.point_data["Normals"] = _point_normals(skin)
        skin.point_data.active_normals_name = "Normals"
        skin.set_active_scalars(SCALARS)
        top = float(skin[SCALARS].max())
        # Round the colour range up to 0.5 mm so the scale does not twitch while dragging
        # (the tolerance keeps a solver's 5.000000001 at 5).
        top = max(0.5, float(np.ceil(top * 2.0 - 1e-6) / 2.0))
        self.skin_actor.GetMapper().SetScalarRange(0.0, top)
        skin.Modified()
        self.scene.request_render()

    def scalar_range(self) -> tuple[float, float]:
        return tuple(self.skin_actor.GetMapper().GetScalarRange()) if self.skin_actor else (0.0, 0.0)

    def set_segment(self, surface: Optional[pv.PolyData], visible: bool = True) -> None:
        """The segment's surface, drawn where the plan moves it (None: draw none)."""
        if self.segment_actor is not None:
            self.plotter.remove_actor(self.segment_actor, render=False)
            self.segment_actor = None
        if surface is not None:
            self.segment_actor = self.plotter.add_mesh(
                surface, color=SEGMENT_COLOR, smooth_shading=True, specular=0.3, specular_power=20,
                name="plan_segment", reset_camera=False, render=False)
            self.segment_actor.SetVisibility(bool(visible))
        self._apply_mode()

    def set_segment_visible(self, visible: bool) -> None:
        if self.segment_actor is not None:
            self.segment_actor.SetVisibility(bool(visible))
            self.scene.request_render()

    def set_segment_matrix(self, matrix: np.ndarray) -> None:
        """Place the segment: a 4 x 4 LPS matrix (the planned rigid move)."""
        self._matrix = np.asarray(matrix, float)
        self._apply_mode()

    def segment_matrix(self) -> np.ndarray:
        """The matrix the segment is drawn with now (identity in "before" mode)."""
        if self.segment_actor is None:
            return np.eye(4)
        m = self.segment_actor.GetUserMatrix()
        return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])

    def set_mode(self, mode: str, opacity: Optional[float] = None) -> None:
        """``after`` or ``before`` (see ``MODES``); skin opacity 0..1."""
        if mode not in MODES:
            raise KeyError(f"unknown plan view mode {mode!r}")
        self.mode = mode
        if opacity is not None:
            self.opacity = float(opacity)
        self._apply_mode()

    def _apply_mode(self) -> None:
        if self.skin_actor is not None:
            self.skin_actor.SetVisibility(self.mode != "before")
            self.skin_actor.GetProperty().SetOpacity(self.opacity)
            self._set_bar_visible(self.mode != "before")
            self.original_actor.SetVisibility(self.mode == "before")
            self.original_actor.GetProperty().SetOpacity(self.opacity)
        if self.segment_actor is not None:
            moved = self._matrix if self.mode != "before" else np.eye(4)
            self.segment_actor.SetUserMatrix(vtk_matrix(moved))
        self.scene.request_render()

    def _set_bar_visible(self, visible: bool) -> None:
        if BAR_TITLE in self.plotter.scalar_bars:
            self.plotter.scalar_bars[BAR_TITLE].SetVisibility(visible)

    def clear(self) -> None:
        """Remove the plan's actors and the scalar bar."""
        for attr in ("skin_actor", "original_actor", "segment_actor"):
            actor = getattr(self, attr)
            if actor is not None:
                self.plotter.remove_actor(actor, render=False)
                setattr(self, attr, None)
        if BAR_TITLE in self.plotter.scalar_bars:
            self.plotter.remove_scalar_bar(BAR_TITLE, render=False)
        self._skin = self._original = self._offsets = self._predicted = None
        self._matrix = np.eye(4)
        self.scene.request_render()
