"""Label -> surface: TwinPlan (VTK discrete flying edges) vs scikit-image marching cubes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage import measure

from benchmarks.timing import best_time
from imaging.meshing import mesh_labelmap
from imaging.phantom import SpherePhantom
from imaging.volume import Geometry, LabelMap

DEMO = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")


def _compare(name: str, mask: np.ndarray, spacing, repeat: int) -> dict:
    lab = LabelMap(mask.astype(np.uint8), Geometry(spacing))
    # Same job on both sides: the raw isosurface, no smoothing.
    t_ours = best_time(lambda: mesh_labelmap(lab, smoothing_iterations=0), repeat)
    padded = np.pad(mask.astype(np.float32), 1)
    t_base = best_time(lambda: measure.marching_cubes(padded, 0.5, spacing=spacing[::-1]), repeat)
    return {"name": name, "ours_s": t_ours, "baseline_s": t_base, "ratio": t_base / t_ours, "goal": 5.0}


def run(repeat: int = 3) -> list[dict]:
    results = []
    if DEMO.is_file():
        from imaging.invesalius import load_invesalius_project
        from imaging.segment import segment_threshold

        vol = load_invesalius_project(DEMO, load_surfaces=False).volume
        bone = segment_threshold(vol, (226, 3071), name="bone")
        results.append(_compare("mesh Cranium bone (256x256x108) vs skimage", bone.array > 0,
                                vol.geometry.spacing_xyz, repeat))
    p = SpherePhantom(shape_zyx=(300, 512, 512), spacing_xyz=(0.5, 0.5, 0.5),
                      origin_xyz=(0, 0, 0), center_xyz=(128, 128, 75), radius_mm=70)
    results.append(_compare("mesh 512x512x300 sphere label vs skimage",
                            p.volume_array() > 600, p.spacing_xyz, repeat))
    return results
