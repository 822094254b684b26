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

import contextlib

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
DISTANCE = "distance_mm"
DISTANCE_BAR = "Distance to\noriginal skin\n(mm)"
DISTANCE_CMAP = "RdBu_r"  # red: skin moved outward, blue: inward
DIFFERENCE = "difference_mm"
DIFFERENCE_BAR = "Neo-Hookean\nminus linear\n(mm)"
DIFFERENCE_CMAP = "viridis"
#: What the view shows: ``after`` the predicted skin and moved segment, ``before`` both before
#: the move, ``side`` before | after side by side (one camera), ``distance`` the predicted skin
#: by signed distance to the original skin, ``compare`` linear | neo-Hookean coloured by their
#: difference (once refined).
MODES = ("after", "before", "side", "distance", "compare")
LABEL_COLOR = "#e2e2e6"


@contextlib.contextmanager
def _deferred_render(plotter):
    """No synchronous render while actors and scalar bars are half built (pyvista renders inside
    ``add_scalar_bar``); the scene renders once, from the event loop, when all is in place."""
    before = getattr(plotter, "_suppress_rendering", False)
    plotter._suppress_rendering = True
    try:
        yield
    finally:
        plotter._suppress_rendering = before


def _bar_args(title: str, fmt: str = "%.1f") -> dict:
    return {"title": title, "vertical": True, "position_x": 0.06, "position_y": 0.3, "height": 0.5,
            "width": 0.07, "fmt": fmt, "n_labels": 5, "color": LABEL_COLOR, "title_font_size": 13,
            "label_font_size": 12}


def _nice_top(values: np.ndarray, step: float = 0.5) -> float:
    """Colour range top rounded up to ``step`` (the tolerance keeps a solver's 5.000000001 at 5)."""
    values = np.atleast_1d(values)
    top = float(np.max(np.abs(values))) if values.size else 0.0
    return max(step, float(np.ceil(top / step - 1e-6) * step))


def _shared_actor(actor: vtk.vtkActor) -> vtk.vtkActor:
    """A second actor drawing the same mapper with the same look (for the side renderer)."""
    twin = vtk.vtkActor()
    twin.SetMapper(actor.GetMapper())
    twin.SetProperty(actor.GetProperty())
    return twin


def _corner_text(text: str) -> vtk.vtkTextActor:
    label = vtk.vtkTextActor()
    label.SetInput(text)
    label.GetTextProperty().SetFontSize(16)
    label.GetTextProperty().SetColor(*pv.Color(LABEL_COLOR).float_rgb)
    label.GetTextProperty().BoldOn()
    label.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
    label.SetPosition(0.03, 0.93)
    return label


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
        self.distance_actor: Optional[vtk.vtkActor] = None
        self.refined_actor: Optional[vtk.vtkActor] = None
        self._distance: Optional[pv.PolyData] = None
        self._refined: Optional[pv.PolyData] = None
        self._refined_fe: Optional[np.ndarray] = None  # neo-Hookean FE points, before display smoothing
        self._side_props: list = []
        self.main_label = _corner_text("")
        self.side_label = _corner_text("")
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
        with _deferred_render(self.plotter):
            self._show_skin(original, smooth)
        self.scene.request_render()

    def _show_skin(self, original: pv.PolyData, smooth: bool) -> None:
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
        self.skin_actor = self.plotter.add_mesh(
            skin, scalars=SCALARS, cmap=CMAP, clim=(0.0, 1.0), scalar_bar_args=_bar_args(BAR_TITLE),
            specular=0.2, specular_power=15, name="plan_skin", reset_camera=False, render=False)
        self.skin_actor.GetProperty().SetInterpolationToGouraud()
        self._distance = self._copy_skin(skin, DISTANCE)
        self.distance_actor = self.plotter.add_mesh(
            self._distance, scalars=DISTANCE, cmap=DISTANCE_CMAP, clim=(-1.0, 1.0),
            scalar_bar_args=_bar_args(DISTANCE_BAR), specular=0.2, specular_power=15, name="plan_skin_distance",
            reset_camera=False, render=False)
        self.distance_actor.GetProperty().SetInterpolationToGouraud()
        self.plotter.renderer.AddViewProp(self.main_label)
        ghost = pv.PolyData(shown.copy(), faces.copy())
        ghost.point_data["Normals"] = normals
        ghost.point_data.active_normals_name = "Normals"
        self._original = ghost
        self._base_points = np.array(base.points)
        self.original_actor = self.plotter.add_mesh(
            ghost, color=SKIN_COLOR, specular=0.2, name="plan_skin_original", reset_camera=False, render=False)
        self.original_actor.GetProperty().SetInterpolationToGouraud()
        self._apply_mode()

    @staticmethod
    def _copy_skin(skin: pv.PolyData, scalars: str) -> pv.PolyData:
        """A dataset with the skin's points and faces and its own (zero) ``scalars``."""
        out = pv.PolyData(np.array(skin.points), np.array(skin.faces))
        out.point_data["Normals"] = np.array(skin.point_data["Normals"])
        out.point_data.active_normals_name = "Normals"
        out[scalars] = np.zeros(out.n_points)
        out.set_active_scalars(scalars)
        return out

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
        if self._refined_fe is not None:
            self.set_refined(self._refined_fe, np.asarray(self._refined[DIFFERENCE]))

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
        # Round the colour range up to 0.5 mm so the scale does not twitch while dragging.
        self.skin_actor.GetMapper().SetScalarRange(0.0, _nice_top(skin[SCALARS]))
        skin.Modified()
        if DISTANCE in predicted.point_data:
            dist = self._distance
            dist.points = np.array(skin.points)
            dist.point_data["Normals"] = np.array(skin.point_data["Normals"])
            dist.point_data[DISTANCE] = np.asarray(predicted[DISTANCE])
            dist.set_active_scalars(DISTANCE)
            # Symmetric (white is no change), over the 99th percentile: a few staircase corners of the
            # FE skin would otherwise wash the map out.
            top = _nice_top(np.percentile(np.abs(dist[DISTANCE]), 99.0), 0.25)
            self.distance_actor.GetMapper().SetScalarRange(-top, top)
            dist.Modified()
        self.scene.request_render()

    def distance_range(self) -> tuple[float, float]:
        return tuple(self.distance_actor.GetMapper().GetScalarRange()) if self.distance_actor else (0.0, 0.0)

    def set_refined(self, points_mm: Optional[np.ndarray], difference_mm: Optional[np.ndarray] = None) -> None:
        """The neo-Hookean skin (FE points, same order as the skin) and |neo-Hookean - linear| per point, mm.

        None removes it. Shown in ``compare`` mode next to the linear prediction.
        """
        if points_mm is None or self._skin is None:
            if self.refined_actor is not None:
                self.plotter.remove_actor(self.refined_actor, render=False)
                if DIFFERENCE_BAR in self.plotter.scalar_bars:
                    self.plotter.remove_scalar_bar(DIFFERENCE_BAR, render=False)
            self.refined_actor, self._refined, self._refined_fe = None, None, None
            self._apply_mode()
            return
        self._refined_fe = np.asarray(points_mm, float)
        shown = self._refined_fe + (self._offsets if self._smooth else 0.0)
        if self._refined is None:
            self._refined = self._copy_skin(self._skin, DIFFERENCE)
            self.refined_actor = self.plotter.add_mesh(
                self._refined, scalars=DIFFERENCE, cmap=DIFFERENCE_CMAP, clim=(0.0, 1.0),
                scalar_bar_args=_bar_args(DIFFERENCE_BAR, "%.2f"), specular=0.2, specular_power=15,
                name="plan_skin_refined", reset_camera=False, render=False)
            self.refined_actor.GetProperty().SetInterpolationToGouraud()
        refined = self._refined
        refined.points = shown
        refined.point_data["Normals"] = _point_normals(refined)
        refined.point_data[DIFFERENCE] = np.asarray(difference_mm, float)
        refined.set_active_scalars(DIFFERENCE)
        self.refined_actor.GetMapper().SetScalarRange(0.0, _nice_top(refined[DIFFERENCE], 0.05))
        refined.Modified()
        self._apply_mode()

    def difference_range(self) -> tuple[float, float]:
        return tuple(self.refined_actor.GetMapper().GetScalarRange()) if self.refined_actor else (0.0, 0.0)

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
        mode = self.mode
        split = mode in ("side", "compare") and self.skin_actor is not None
        side = self.scene.set_split(split)
        self._fill_side(side)
        if self.skin_actor is not None:
            shown = {"after": self.skin_actor, "before": self.original_actor, "side": self.skin_actor,
                     "distance": self.distance_actor, "compare": self.refined_actor}[mode]
            for actor in (self.skin_actor, self.original_actor, self.distance_actor, self.refined_actor):
                if actor is not None:
                    actor.SetVisibility(actor is shown)
                    actor.GetProperty().SetOpacity(self.opacity)
            bars = {"after": BAR_TITLE, "side": BAR_TITLE, "distance": DISTANCE_BAR, "compare": DIFFERENCE_BAR}
            for title in (BAR_TITLE, DISTANCE_BAR, DIFFERENCE_BAR):
                self._set_bar_visible(title, bars.get(mode) == title)
                if title in self.plotter.scalar_bars:  # split: at the right edge, clear of the left half
                    self.plotter.scalar_bars[title].SetPosition(0.84 if split else 0.06, 0.3)
            self.main_label.SetInput({
                "after": "", "before": "", "side": "After (predicted)", "distance": "",
                "compare": "Neo-Hookean (colour: difference)" if self.refined_actor is not None
                else "Refine (neo-Hookean) to compare"}[mode])
        if self.segment_actor is not None:
            moved = self._matrix if mode != "before" else np.eye(4)
            self.segment_actor.SetUserMatrix(vtk_matrix(moved))
        self.scene.request_render()

    def _fill_side(self, side: Optional[vtk.vtkRenderer]) -> None:
        """Left half of a split view: the skin before the move, or the linear prediction."""
        for prop in self._side_props:
            if side is not None:
                side.RemoveViewProp(prop)
        self._side_props = []
        if side is None:
            return
        compare = self.mode == "compare"
        props = [_shared_actor(self.skin_actor if compare else self.original_actor)]
        if self.segment_actor is not None and self.segment_actor.GetVisibility():
            segment = _shared_actor(self.segment_actor)
            segment.SetUserMatrix(vtk_matrix(self._matrix if compare else np.eye(4)))
            props.append(segment)
        if not compare:  # the rest of the scene (bone...) as it is, for context
            props += [_shared_actor(a) for a in self.scene.surface_actors.values() if a.GetVisibility()]
        else:
            bar = vtk.vtkScalarBarActor()
            bar.SetLookupTable(self.skin_actor.GetMapper().GetLookupTable())
            bar.SetTitle(BAR_TITLE)
            bar.SetLabelFormat("%.1f")
            bar.SetNumberOfLabels(5)
            bar.SetPosition(0.06, 0.3)
            bar.SetWidth(0.07)
            bar.SetHeight(0.5)
            for prop in (bar.GetTitleTextProperty(), bar.GetLabelTextProperty()):
                prop.SetColor(*pv.Color(LABEL_COLOR).float_rgb)
            props.append(bar)
        for prop in props:
            prop.SetVisibility(True)
            if isinstance(prop, vtk.vtkActor):
                prop.GetProperty().SetOpacity(self.opacity) if prop.GetProperty() is not None else None
        self.side_label.SetInput("Linear" if compare else "Before")
        props.append(self.side_label)
        for prop in props:
            side.AddViewProp(prop)
        self._side_props = props

    def _set_bar_visible(self, title: str, visible: bool) -> None:
        if title in self.plotter.scalar_bars:
            self.plotter.scalar_bars[title].SetVisibility(visible)

    def clear(self) -> None:
        """Remove the plan's actors, scalar bars and split view."""
        for attr in ("skin_actor", "original_actor", "segment_actor", "distance_actor", "refined_actor"):
            actor = getattr(self, attr)
            if actor is not None:
                self.plotter.remove_actor(actor, render=False)
                setattr(self, attr, None)
        for title in (BAR_TITLE, DISTANCE_BAR, DIFFERENCE_BAR):
            if title in self.plotter.scalar_bars:
                self.plotter.remove_scalar_bar(title, render=False)
        self.plotter.renderer.RemoveViewProp(self.main_label)
        self._skin = self._original = self._offsets = self._predicted = None
        self._distance = self._refined = self._refined_fe = None
        self._matrix = np.eye(4)
        self._side_props = []
        self.scene.set_split(False)
        self.scene.request_render()
