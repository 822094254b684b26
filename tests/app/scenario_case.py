"""The Cranium demo case with bone, skin and a Le Fort I-like maxilla segment, built once per process.

Shared by the scenario, sweep and scenario-CLI tests (same segment as tests/mechanics/test_whatif.py).
"""
from __future__ import annotations

import functools

import numpy as np

from app.case import Case

#: Coarse elements keep each FE solve under a second on the Cranium CT (3.7k nodes, measured 0.6 s).
COARSE_MM = 10.0


@functools.lru_cache(maxsize=1)
def _cranium() -> Case:
    from app.pipeline import apply_result, import_scan, step_segment
    from imaging.volume import LabelInfo, LabelMap
    from tests.conftest import DEMO_CASE

    case = import_scan(DEMO_CASE)
    apply_result(case, step_segment(case, label="bone", preset="bone"))
    apply_result(case, step_segment(case, label="skin", preset="skin"))
    bone = case.labels["bone"]
    g = bone.geometry
    z = g.origin_xyz[2] + np.arange(bone.array.shape[0]) * g.spacing_xyz[2]
    y = g.origin_xyz[1] + np.arange(bone.array.shape[1]) * g.spacing_xyz[1]
    maxilla = (bone.array > 0) & (z[:, None, None] < 20.0) & (y[None, :, None] < -150.0)
    case.set_item("label", "maxilla", LabelMap(maxilla.astype(np.uint8), g, {1: LabelInfo("maxilla")}))
    return case


def cranium_case() -> Case:
    """A fresh Case sharing the (read-only) items of the cached Cranium case; no scenarios."""
    base = _cranium()
    case = Case(base.name)
    case.volumes, case.labels = dict(base.volumes), dict(base.labels)
    case.surfaces, case.provenance = dict(base.surfaces), dict(base.provenance)
    return case


def advancement(voxel_mm: float = COARSE_MM, **changes) -> dict:
    """Tissue parameters of a 5 mm maxillary advancement (LPS: anterior is -y), other bone fixed."""
    return {"segment": "maxilla", "move": [0.0, -5.0, 0.0, 0.0, 0.0, 0.0], "fixed": ["bone"],
            "voxel_mm": voxel_mm, **changes}


def vmtk_centerline_case() -> Case:
    """A case whose surface ``centerline`` is the vessel tree of vmtk's aorta centerlines (real data).

    vmtk gives two inlet-to-outlet tracts sharing the trunk; the tree is the shared trunk plus the two
    iliac branches from the first point where the tracts part (radius: maximum inscribed sphere, mm).
    """
    import pyvista as pv

    from imaging.vessel_tree import Branch, VesselTree
    from tests.conftest import data_path

    poly = pv.read(str(data_path("vmtk_aorta", "reference", "aorta-centerline.vtp")))
    radius = np.asarray(poly["MaximumInscribedSphereRadius"], float)
    (a, ra), (b, rb) = [(poly.points[ids], radius[ids]) for ids in
                        (poly.get_cell(i).point_ids for i in range(2))]
    n = min(len(a), len(b))
    k = int(np.argmax(np.linalg.norm(a[:n] - b[:n], axis=1) > 0.5))
    trunk = Branch(a[:k], ra[:k], None, [1, 2])
    left = Branch(a[k - 1:], ra[k - 1:], 0, [])
    right = Branch(np.vstack([a[k - 1:k], b[k:]]), np.concatenate([ra[k - 1:k], rb[k:]]), 0, [])
    case = Case("vmtk_aorta")
    case.surfaces["centerline"] = VesselTree([trunk, left, right], []).to_polydata()
    return case
