"""Offscreen pictures of a case for the CLI and reports (pyvista, no Qt)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import pyvista as pv
from PIL import Image

from imaging.volume import LabelMap, Volume
from imaging.windowing import WINDOW_PRESETS, window_to_gray

def _slice(array: np.ndarray, view: str, index: int) -> np.ndarray:
    """2D image for a view, rows top->bottom as displayed (superior up)."""
    if view == "axial":
        return array[index]
    if view == "coronal":
        return array[:, index, :][::-1]
    return array[:, :, index][::-1]


def slice_png(
    volume: Volume,
    view: str,
    path: str | os.PathLike,
    *,
    index: Optional[int] = None,
    labels: Optional[list[LabelMap]] = None,
    window: tuple[float, float] = WINDOW_PRESETS["bone"],
) -> Path:
    """Write one slice (axial/coronal/sagittal through the centre) with label overlays."""
    axis = {"axial": 0, "coronal": 1, "sagittal": 2}[view]
    idx = volume.array.shape[axis] // 2 if index is None else index
    gray = window_to_gray(_slice(volume.array, view, idx), *window)
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    for lab in labels or []:
        m = _slice(lab.array, view, idx) > 0
        color = np.array(next(iter(lab.labels.values())).color) * 255
        rgb[m] = 0.55 * rgb[m] + 0.45 * color
    img = Image.fromarray(rgb.astype(np.uint8))
    sx, sy, sz = volume.geometry.spacing_xyz
    px = {"axial": (sx, sy), "coronal": (sx, sz), "sagittal": (sy, sz)}[view]
    w, h = img.size
    img = img.resize((int(round(w * px[0] / min(px))), int(round(h * px[1] / min(px)))))
    out = Path(path)
    img.save(out)
    return out


def surface_png(
    surfaces: list[tuple[pv.PolyData, tuple[float, float, float]]],
    path: str | os.PathLike,
    *,
    view: str = "anterior",
    size: tuple[int, int] = (800, 800),
) -> Path:
    """Render surfaces offscreen from an anatomical direction (LPS frame)."""
    directions = {"anterior": ((0, -1, 0), (0, 0, 1)), "left": ((1, 0, 0), (0, 0, 1)),
                  "right": ((-1, 0, 0), (0, 0, 1)), "superior": ((0, 0, 1), (0, -1, 0))}
    look, up = directions[view]
    plotter = pv.Plotter(off_screen=True, window_size=list(size))
    plotter.set_background("#1e1e24")
    for surface, color in surfaces:
        plotter.add_mesh(surface, color=color, smooth_shading=True, specular=0.3)
    center = np.mean([np.array(s.center) for s, _ in surfaces], axis=0)
    radius = max(s.length for s, _ in surfaces)
    plotter.camera.focal_point = center
    plotter.camera.position = center + np.array(look, float) * radius * 2.0
    plotter.camera.up = up
    plotter.reset_camera()
    out = Path(path)
    plotter.screenshot(str(out))
    plotter.close()
    return out
