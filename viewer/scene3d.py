"""The 3D view: surfaces, the three slice planes and CT volume rendering.

Everything is shown in patient LPS millimetres. Surfaces already are; the CT
is handed to VTK in its index frame (voxel (i, j, k) at ``(i*sx, j*sy,
k*sz)``) and placed by a user matrix built from the direction and origin, so
oblique volumes land where the surfaces meshed from them do.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import pyvista as pv
import vtk
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget
from pyvistaqt import QtInteractor
from vtk.util.numpy_support import numpy_to_vtk

from imaging.volume import Geometry, Volume
from viewer.slice_geometry import VIEWS, view_axes
from viewer.volume_presets import VOLUME_PRESETS, transfer_functions

log = logging.getLogger(__name__)

#: Camera (direction from the focal point to the eye, view-up), LPS.
CAMERA_VIEWS = {
    "anterior": ((0, -1, 0), (0, 0, 1)),
    "posterior": ((0, 1, 0), (0, 0, 1)),
    "left": ((1, 0, 0), (0, 0, 1)),
    "right": ((-1, 0, 0), (0, 0, 1)),
    "superior": ((0, 0, 1), (0, -1, 0)),
    "inferior": ((0, 0, -1), (0, -1, 0)),
}
BACKGROUND = ("#101018", "#3a3f52")  # bottom, top
TITLE_COLOR = "#7f8fb8"
#: OpenGL renderers that emulate the GPU on the CPU: GPU ray casting takes
#: seconds per frame there (measured 1.6-3 s on llvmpipe vs 0.14 s for VTK's
#: CPU ray caster, Cranium CT in a 740 x 440 view).
SOFTWARE_GL = ("llvmpipe", "softpipe", "swiftshader", "software rasterizer")


def is_software_gl(capabilities: str) -> bool:
    """True if an OpenGL capability report names a CPU-emulated renderer."""
    for line in capabilities.splitlines():
        if line.lower().startswith("opengl renderer string"):
            return any(name in line.lower() for name in SOFTWARE_GL)
    return False


def vtk_matrix(m: np.ndarray) -> vtk.vtkMatrix4x4:
    """A 4 x 4 numpy matrix as a ``vtkMatrix4x4`` (for actors' user matrices)."""
    out = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out


def placement_matrix(geometry: Geometry) -> vtk.vtkMatrix4x4:
    """Matrix taking the index-mm frame (spacing applied, origin 0) to LPS."""
    m = np.eye(4)
    m[:3, :3] = geometry.direction
    m[:3, 3] = geometry.origin_xyz
    return vtk_matrix(m)


def _image_data(volume: Volume) -> tuple[vtk.vtkImageData, np.ndarray]:
    """VTK image of the volume in its index-mm frame, sharing the voxels.

    Returns the image and the (contiguous) array it points into, which the
    caller must keep alive as long as the image. Sharing matters: a 500-slice
    CT is 250 MB. Case items are replaced, never edited in place, so the
    shared buffer does not change under VTK.
    """
    image = vtk.vtkImageData()
    nx, ny, nz = volume.dims_xyz
    image.SetDimensions(nx, ny, nz)
    image.SetSpacing(volume.geometry.spacing_xyz)
    image.SetOrigin(0.0, 0.0, 0.0)
    flat = np.ascontiguousarray(volume.array).ravel()
    scalars = numpy_to_vtk(flat, deep=False)
    scalars.SetName("hu")
    image.GetPointData().SetScalars(scalars)
    return image, flat


class Scene3D(QWidget):
    """A pyvistaqt render window showing a case in 3D."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("scene3d")
        # auto_update=False: render on demand, not 5 times a second while idle.
        self.plotter = QtInteractor(self, auto_update=False)
        # pyvistaqt would load dropped files as meshes; let drops reach the main window.
        self.plotter.interactor.setAcceptDrops(False)
        title = QLabel("3D")
        title.setStyleSheet(f"background:{TITLE_COLOR}; color:black; font-weight:bold; padding:1px 6px;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(1, 1, 1, 1)
        layout.setSpacing(1)
        layout.addWidget(title)
        layout.addWidget(self.plotter.interactor, 1)
        self.plotter.set_background(BACKGROUND[0], top=BACKGROUND[1])
        self.plotter.add_axes(xlabel="L", ylabel="P", zlabel="S", line_width=2)
        self._image: Optional[vtk.vtkImageData] = None
        self._voxels: Optional[np.ndarray] = None  # keeps the buffer ``_image`` points into alive
        self._placement: Optional[vtk.vtkMatrix4x4] = None
        self._slices: dict[str, vtk.vtkImageSlice] = {}
        self._slice_axes: dict[str, int] = {}
        self._slices_visible = True
        self._volume_actor: Optional[vtk.vtkVolume] = None
        self._vr = {"enabled": False, "preset": "bone", "shift_hu": 0.0, "opacity_scale": 1.0}
        self.surface_actors: dict[str, vtk.vtkActor] = {}
        self._window_level = (400.0, 40.0)
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(0)
        self._render_timer.timeout.connect(self._render_now)
        self.volume_mapper_mode = ""  # "gpu" or "cpu" once volume rendering was used
        self.side_renderer: Optional[vtk.vtkRenderer] = None  # left half in split view

    # -- volume and slice planes ---------------------------------------------
    def set_volume(self, volume: Optional[Volume]) -> None:
        """Show a new CT (slice planes at its centre) or clear it."""
        for actor in self._slices.values():
            self.plotter.remove_actor(actor, render=False)
        self._slices.clear()
        if self._volume_actor is not None:
            self.plotter.remove_actor(self._volume_actor, render=False)
            self._volume_actor = None
        self._image = None
        self._voxels = None
        if volume is None:
            self.request_render()
            return
        self._image, self._voxels = _image_data(volume)
        self._placement = placement_matrix(volume.geometry)
        for name in VIEWS:
            axis = view_axes(name, volume.geometry.direction).normal_axis
            mapper = vtk.vtkImageSliceMapper()
            mapper.SetInputData(self._image)
            mapper.SetOrientation(axis)
            mapper.SetSliceNumber(volume.dims_xyz[axis] // 2)
            actor = vtk.vtkImageSlice()
            actor.SetMapper(mapper)
            actor.SetUserMatrix(self._placement)
            actor.GetProperty().SetInterpolationTypeToLinear()
            actor.SetVisibility(self._slices_visible)
            self.plotter.add_actor(actor, reset_camera=False, name=f"slice_{name}", render=False)
            self._slices[name] = actor
            self._slice_axes[name] = axis
        self.set_window_level(*self._window_level)
        if self._vr["enabled"]:
            self._update_volume_rendering()
        self.reset_camera("anterior")

    def set_point(self, ijk: tuple[int, int, int]) -> None:
        """Move the slice planes to the crosshair voxel (i, j, k)."""
        for name, actor in self._slices.items():
            actor.GetMapper().SetSliceNumber(int(ijk[self._slice_axes[name]]))
        self.request_render()

    def slice_numbers(self) -> dict[str, int]:
        """Slice shown by each plane (index along its normal voxel axis)."""
        return {name: actor.GetMapper().GetSliceNumber() for name, actor in self._slices.items()}

    def set_slices_visible(self, visible: bool) -> None:
        self._slices_visible = bool(visible)
        for actor in self._slices.values():
            actor.SetVisibility(self._slices_visible)
        self.request_render()

    def set_window_level(self, window: float, level: float) -> None:
        """Grey mapping of the slice planes, HU."""
        self._window_level = (float(window), float(level))
        for actor in self._slices.values():
            actor.GetProperty().SetColorWindow(float(window))
            actor.GetProperty().SetColorLevel(float(level))
        self.request_render()

    # -- volume rendering ----------------------------------------------------
    def set_volume_rendering(
        self,
        enabled: bool,
        preset: Optional[str] = None,
        shift_hu: Optional[float] = None,
        opacity_scale: Optional[float] = None,
    ) -> None:
        """Turn CT volume rendering on/off and adjust its transfer function.

        Parameters
        ----------
        enabled : bool
            Show the volume rendering.
        preset : str, optional
            A key of ``VOLUME_PRESETS`` (bone, skin, vessels).
        shift_hu : float, optional
            Shift of the transfer function along HU.
        opacity_scale : float, optional
            Factor on all opacities.
        """
        if preset is not None:
            if preset not in VOLUME_PRESETS:
                raise KeyError(f"unknown volume rendering preset {preset!r}")
            self._vr["preset"] = preset
        if shift_hu is not None:
            self._vr["shift_hu"] = float(shift_hu)
        if opacity_scale is not None:
            self._vr["opacity_scale"] = float(opacity_scale)
        self._vr["enabled"] = bool(enabled)
        self._update_volume_rendering()

    @property
    def volume_actor(self) -> Optional[vtk.vtkVolume]:
        return self._volume_actor

    def _update_volume_rendering(self) -> None:
        if self._image is None:
            return
        if not self._vr["enabled"]:
            if self._volume_actor is not None:
                self._volume_actor.SetVisibility(False)
            self.request_render()
            return
        if self._volume_actor is None:
            # GPU ray casting on real GPUs; VTK's CPU ray caster on emulated OpenGL (Xvfb, VMs).
            mapper = vtk.vtkSmartVolumeMapper()
            mapper.SetInputData(self._image)
            if is_software_gl(self.plotter.render_window.ReportCapabilities()):
                mapper.SetRequestedRenderModeToRayCast()
                self.volume_mapper_mode = "cpu"
            else:
                self.volume_mapper_mode = "gpu"
            log.info("volume rendering on the %s", self.volume_mapper_mode.upper())
            prop = vtk.vtkVolumeProperty()
            prop.ShadeOn()
            prop.SetInterpolationTypeToLinear()
            prop.SetAmbient(0.25)
            prop.SetDiffuse(0.8)
            prop.SetSpecular(0.2)
            actor = vtk.vtkVolume()
            actor.SetMapper(mapper)
            actor.SetProperty(prop)
            actor.SetUserMatrix(self._placement)
            self.plotter.add_actor(actor, reset_camera=False, name="volume_rendering", render=False)
            self._volume_actor = actor
        color, opacity = transfer_functions(
            self._vr["preset"], self._vr["shift_hu"], self._vr["opacity_scale"])
        prop = self._volume_actor.GetProperty()
        prop.SetColor(color)
        prop.SetScalarOpacity(opacity)
        prop.SetScalarOpacityUnitDistance(min(self._image.GetSpacing()))
        self._volume_actor.SetVisibility(True)
        self.request_render()

    # -- surfaces ------------------------------------------------------------
    def set_surface(self, name: str, surface: pv.PolyData, color, visible: bool = True) -> None:
        """Add or replace a surface (LPS mm) drawn in ``color`` (RGB 0..1)."""
        first = not self.surface_actors and self._image is None
        self.remove_surface(name, render=False)
        actor = self.plotter.add_mesh(
            surface, color=tuple(color), smooth_shading=True, specular=0.3, specular_power=20,
            name=f"surface_{name}", reset_camera=False, render=False,
        )
        actor.SetVisibility(bool(visible))
        self.surface_actors[name] = actor
        if first:
            self.reset_camera("anterior")
        else:
            self.request_render()

    def remove_surface(self, name: str, render: bool = True) -> None:
        actor = self.surface_actors.pop(name, None)
        if actor is not None:
            self.plotter.remove_actor(actor, render=False)
            if render:
                self.request_render()

    def set_surface_visible(self, name: str, visible: bool) -> None:
        actor = self.surface_actors.get(name)
        if actor is not None:
            actor.SetVisibility(bool(visible))
            self.request_render()

    def clear(self) -> None:
        """Remove everything (new case)."""
        for name in list(self.surface_actors):
            self.remove_surface(name, render=False)
        self.set_volume(None)

    # -- rendering -----------------------------------------------------------
    def request_render(self) -> None:
        """Render once control returns to the event loop (coalesces bursts of changes)."""
        self._render_timer.start()

    def _render_now(self) -> None:
        if self.plotter.render_window is not None:
            self.plotter.render()

    # -- split view -----------------------------------------------------------
    def set_split(self, split: bool) -> Optional[vtk.vtkRenderer]:
        """Split the view: a second renderer on the left half, sharing the camera (linked views).

        The main renderer (everything added through ``plotter``) takes the right
        half. Returns the left renderer (None when unsplit); callers add their
        own actors to it and remove them before unsplitting.
        """
        main = self.plotter.renderer
        window = self.plotter.render_window
        if split and self.side_renderer is None:
            side = vtk.vtkRenderer()
            side.SetViewport(0.0, 0.0, 0.5, 1.0)
            side.SetActiveCamera(main.GetActiveCamera())  # one camera: rotating either rotates both
            side.GradientBackgroundOn()
            side.SetBackground(*pv.Color(BACKGROUND[0]).float_rgb)
            side.SetBackground2(*pv.Color(BACKGROUND[1]).float_rgb)
            side.SetLayer(0)
            main.SetViewport(0.5, 0.0, 1.0, 1.0)
            window.AddRenderer(side)
            self.side_renderer = side
        elif not split and self.side_renderer is not None:
            self.side_renderer.RemoveAllViewProps()
            window.RemoveRenderer(self.side_renderer)
            self.side_renderer = None
            main.SetViewport(0.0, 0.0, 1.0, 1.0)
        else:
            return self.side_renderer
        # The view's aspect ratio halved or doubled: fit the scene again, same direction.
        self.plotter.reset_camera(render=False)
        self.plotter.camera.zoom(1.3)
        self.request_render()
        return self.side_renderer

    # -- camera and output ---------------------------------------------------
    def reset_camera(self, direction: str = "anterior") -> None:
        """Look at the scene from an anatomical direction (see ``CAMERA_VIEWS``)."""
        look, up = CAMERA_VIEWS[direction]
        self.plotter.reset_camera(render=False)
        camera = self.plotter.camera
        focal = np.array(camera.focal_point)
        distance = np.linalg.norm(np.array(camera.position) - focal)
        camera.position = tuple(focal + np.array(look, float) * distance)
        camera.up = up
        self.plotter.reset_camera(render=False)
        camera.zoom(1.3)  # reset_camera leaves a wide margin around the bounds
        self.request_render()

    def screenshot(self) -> np.ndarray:
        """RGB image (rows x columns x 3, uint8) of the current render."""
        self.plotter.render()
        return np.asarray(self.plotter.screenshot(return_img=True))

    def close(self) -> bool:
        """Release the render window (call before the widget is destroyed)."""
        self._render_timer.stop()
        self.plotter.close()
        return super().close()
