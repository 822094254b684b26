"""Cases for the scenario tests: the Cranium demo (bone, skin, Le Fort I-like maxilla; built once per process
in tests/mechanics/cranium.py) and a vessel tree from vmtk's aorta centerlines.

Shared by the scenario, sweep and scenario-CLI tests (same segment as tests/mechanics/test_whatif.py).
"""
from __future__ import annotations

import numpy as np

from app.case import Case

#: Coarse elements keep each FE solve under a second on the Cranium CT (3.7k nodes, measured 0.6 s).
COARSE_MM = 10.0


def _cranium() -> Case:
    from tests.conftest import DEMO_CASE
    from tests.mechanics.cranium import cranium_case as shared_cranium

    return shared_cranium(DEMO_CASE)


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
