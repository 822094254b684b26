"""Draw rehearsal scenes and export them as video: offscreen frames, mp4/GIF writer (no Qt).

Holds what turns a :class:`app.rehearsal.Rehearsal` into pixels: adding a
scene's layers to a pyvista plotter (shared with the GUI rehearsal panel and
the report's snapshots), the camera, the colour legend and timeline strip
painted into frames, the offscreen frame renderer, and the mp4 (H.264) or
animated GIF export with its target checks, one frame at a time or all at once.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pyvista as pv

from app.rehearsal import Layer, Rehearsal
from imaging.errors import InputError
from imaging.progress import CancelledFn, ProgressFn, no_progress

log = logging.getLogger(__name__)

BACKGROUND = "#1e1e24"
VIDEO_SUFFIXES = (".mp4", ".gif")


def draw_layers(plotter: pv.Plotter, layers: list[Layer], prefix: str = "rehearsal_",
                cache: Optional[dict] = None, scalar_bar: bool = True) -> list[str]:
    """Add (or replace, by name) the layers' actors on ``plotter``; returns the actor names.

    With a ``cache`` dict (kept by the caller between calls), a layer whose mesh
    object and style are unchanged keeps its actor: only what moves is re-added.
    ``scalar_bar=False`` leaves colour bars out (the GUI states the range in text:
    adding a pyvista scalar bar to the live Qt view mid-playback aborted VTK in tests).
    """
    names = []
    for layer in layers:
        name = prefix + layer.name
        names.append(name)
        style = (layer.color, layer.opacity, layer.scalars, layer.clim, layer.cmap)
        cached = cache.get(name) if cache is not None else None
        # The cache holds the mesh itself: comparing ids of dropped temporaries would match reused ids.
        if cached is not None and cached[0] is layer.mesh and cached[1] == style and name in plotter.actors:
            continue
        if cache is not None:
            cache[name] = (layer.mesh, style)
        # Point normals computed once at build time give smooth shading without per-frame normals.
        kw = dict(smooth_shading=False, specular=0.2, opacity=layer.opacity, name=name, reset_camera=False,
                  render=False)
        if layer.scalars and layer.scalars in layer.mesh.point_data:
            bar = {"scalar_bar_args": {"title": layer.scalars.replace("_", " "), "color": "white"}} if scalar_bar \
                else {"show_scalar_bar": False}
            plotter.add_mesh(layer.mesh, scalars=layer.scalars, clim=layer.clim, cmap=layer.cmap, **bar, **kw)
        else:
            plotter.add_mesh(layer.mesh, color=layer.color, show_scalar_bar=False, **kw)
    return names


def set_camera(plotter: pv.Plotter, camera: tuple) -> None:
    plotter.camera.position, plotter.camera.focal_point, plotter.camera.up = camera
    plotter.reset_camera_clipping_range()


def paint_legend(frame: np.ndarray, layers: list[Layer]) -> np.ndarray:
    """Colour bar of the first scalar-coloured layer painted into the frame (bottom right).

    Painted with PIL rather than VTK: pyvista's scalar bar aborted VTK (std::bad_alloc)
    inside the Qt application.
    """
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    layer = next((x for x in layers if x.scalars and x.clim), None)
    if layer is None:
        return frame
    h, w = frame.shape[:2]
    bw, bh = max(w // 3, 60), max(h // 40, 6)
    x0, y0 = w - bw - 12, h - bh - 30
    ramp = colormaps[layer.cmap](np.linspace(0.0, 1.0, bw))[:, :3] * 255
    out = frame.copy()
    out[y0:y0 + bh, x0:x0 + bw] = ramp[None, :, :].astype(np.uint8)
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    lo, hi = layer.clim
    draw.text((x0, y0 - 12), layer.scalars.replace("_", " "), fill=(255, 255, 255))
    draw.text((x0, y0 + bh + 2), f"{lo:.2f}", fill=(255, 255, 255))
    draw.text((x0 + bw - 6 * len(f"{hi:.2f}"), y0 + bh + 2), f"{hi:.2f}", fill=(255, 255, 255))
    return np.asarray(img)


def _timeline(frame: np.ndarray, index: int, total: int) -> np.ndarray:
    """A progress strip along the bottom edge, so every frame of the video is distinct."""
    h, w = frame.shape[:2]
    out = frame.copy()
    out[h - 6:, :] = (60, 60, 70)
    out[h - 6:, : max(1, int(round(w * (index + 1) / total)))] = (240, 190, 40)
    return out


def render_frames(rehearsal: Rehearsal, *, size: tuple[int, int] = (640, 480),
                  progress: Optional[ProgressFn] = None,
                  cancelled: Optional[CancelledFn] = None) -> Iterator[np.ndarray]:
    """Render every frame offscreen: RGB uint8 arrays of ``size`` (width, height).

    Raises
    ------
    concurrent.futures.CancelledError
        When ``cancelled()`` turns true between frames.
    """
    from concurrent.futures import CancelledError

    progress = progress or no_progress
    plan = rehearsal.frame_plan()
    plotter = pv.Plotter(off_screen=True, window_size=list(size))
    try:
        plotter.set_background(BACKGROUND)
        previous: list[str] = []
        cache: dict = {}
        for i, (step, t) in enumerate(plan):
            if cancelled is not None and cancelled():
                raise CancelledError()
            layers = rehearsal.scene(step, t)
            names = draw_layers(plotter, layers, cache=cache, scalar_bar=False)
            for stale in set(previous) - set(names):
                plotter.remove_actor(stale, render=False)
                cache.pop(stale, None)
            previous = names
            s = rehearsal.steps[step]
            plotter.add_text(f"{step + 1}/{len(rehearsal.steps)}  {s.title}: {s.description}",
                             position="upper_left", font_size=10, color="white", name="rehearsal_title")
            set_camera(plotter, rehearsal.camera)
            frame = np.asarray(plotter.screenshot(return_img=True))[..., :3]
            progress((i + 1) / len(plan), f"Frame {i + 1}/{len(plan)}")
            yield _timeline(paint_legend(frame, layers), i, len(plan))
    finally:
        plotter.close()


def check_video_target(path, fps: int, size: tuple[int, int]) -> Path:
    """The video path, after checking suffix, fps, frame size and folder.

    Raises
    ------
    InputError
        Unknown suffix, fps outside 1..60, mp4 size not a multiple of 16, missing folder.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise InputError(f"--out {out}: use a .mp4 or .gif file name")
    if not 1 <= int(fps) <= 60:
        raise InputError(f"--fps {fps}: use 1..60 frames per second")
    if suffix == ".mp4" and (size[0] % 16 or size[1] % 16):
        raise InputError(f"frame size {size}: mp4 needs multiples of 16 pixels")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    return out


def iter_export(rehearsal: Rehearsal, path, *, fps: int = 8, size: tuple[int, int] = (640, 480)):
    """Write the video one frame per ``next()``: yields (frames done, total); returns the report.

    Closing the generator early (GUI cancel) removes the partial file.
    """
    import imageio.v2 as imageio

    out = check_video_target(path, fps, size)
    t0 = time.perf_counter()
    tmp = out.with_name(f".{out.stem}.partial{out.suffix.lower()}")
    total, count = rehearsal.n_frames, 0
    try:
        if out.suffix.lower() == ".mp4":
            writer = imageio.get_writer(str(tmp), format="FFMPEG", fps=int(fps), codec="libx264", quality=7,
                                        macro_block_size=16, pixelformat="yuv420p")
        else:
            writer = imageio.get_writer(str(tmp), format="GIF", mode="I", duration=1000.0 / fps, loop=0)
        try:
            for frame in render_frames(rehearsal, size=size):
                writer.append_data(frame)
                count += 1
                yield count, total
        finally:
            writer.close()
        tmp.replace(out)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write the video ({exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    log.info("rehearsal video: %d frames in %.1f s", count, seconds)
    return {"file": str(out), "frames": count, "fps": int(fps), "duration_s": count / fps,
            "seconds": round(seconds, 3), "size": list(size),
            "steps": [{"title": s.title, "frames": s.frames} for s in rehearsal.steps]}


def export_video(rehearsal: Rehearsal, path, *, fps: int = 8, size: tuple[int, int] = (640, 480),
                 progress: Optional[ProgressFn] = None, cancelled: Optional[CancelledFn] = None) -> dict:
    """Write the rehearsal as an mp4 (H.264) or animated GIF.

    Parameters
    ----------
    rehearsal : Rehearsal
        What to play.
    path : path-like
        ``.mp4`` or ``.gif`` file.
    fps : int
        Frames per second (1..60).
    size : (int, int)
        Frame width and height in pixels (multiples of 16 for mp4).

    Returns
    -------
    dict
        ``file``, ``frames``, ``fps``, ``duration_s``, ``seconds`` (wall time), ``size``,
        ``steps`` ([{"title", "frames"}]).

    Raises
    ------
    InputError
        Unknown suffix, bad fps or size, unwritable file.
    concurrent.futures.CancelledError
        ``cancelled()`` turned true; no file is left.
    """
    from concurrent.futures import CancelledError

    progress = progress or no_progress
    frames = iter_export(rehearsal, path, fps=fps, size=size)
    try:
        while True:
            if cancelled is not None and cancelled():
                frames.close()
                raise CancelledError()
            done, total = next(frames)
            progress(done / total, f"Frame {done}/{total}")
    except StopIteration as stop:
        return stop.value
