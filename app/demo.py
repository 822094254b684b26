"""The demo: the Cranium head CT (Debian invesalius-examples) through the whole pipeline."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from app.pipeline import DEMO_CASE, apply_result, import_scan, step_mesh, step_segment
from app.project import save_case
from app.render import slice_png, surface_png
from imaging.errors import InputError
from imaging.meshing import export_surface
from imaging.progress import CancelledFn, ProgressFn, no_progress
from imaging.segment import HU_PRESETS
from imaging.windowing import WINDOW_PRESETS


def run_demo(
    out: Path,
    *,
    source: Path = DEMO_CASE,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> dict:
    """Import, segment bone, mesh, and write the case, the mesh and PNG views.

    Returns
    -------
    dict
        Segmentation and mesh reports and the files written.

    Raises
    ------
    InputError
        If the demo case is not installed or ``out`` cannot be written.
    """
    progress = progress or no_progress
    if not Path(source).is_file():
        raise InputError(f"{source}: demo case not installed (apt-get install invesalius-examples)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create output folder ({exc.strerror})") from exc
    case = import_scan(source, progress=lambda f, m: progress(0.3 * f, m), cancelled=cancelled)
    seg = step_segment(case, label="bone", hu_range=HU_PRESETS["bone"],
                       progress=lambda f, m: progress(0.3 + 0.2 * f, m), cancelled=cancelled)
    apply_result(case, seg)
    mesh = step_mesh(case, label="bone", decimate=0.5,
                     progress=lambda f, m: progress(0.5 + 0.3 * f, m), cancelled=cancelled)
    apply_result(case, mesh)
    progress(0.85, "Writing files")
    files = [save_case(case, out / "demo.twin"), export_surface(mesh.item, out / "bone.stl")]
    volume = case.volumes["ct"]
    bone = case.labels["bone"]
    for view in ("axial", "coronal", "sagittal"):
        files.append(slice_png(volume, view, out / f"{view}.png", labels=[bone],
                               window=WINDOW_PRESETS["bone"]))
    color = next(iter(bone.labels.values())).color
    for view in ("anterior", "left"):
        files.append(surface_png([(mesh.item, color)], out / f"bone_{view}.png", view=view))
    summary = {"segment": seg.report, "mesh": mesh.report, "files": [str(f) for f in files]}
    (out / "demo.json").write_text(json.dumps(summary, indent=1))
    progress(1.0, "Demo done")
    return summary
