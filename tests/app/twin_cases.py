"""A real case with a recorded history, built once per test process (Cranium demo CT).

Import, threshold segmentation, meshing, an osteotomy cut and an in-place
edit through the CLI, a landmark and a coarse soft-tissue plan: every kind of
step the thread must replay. Shared by the thread, replay, follow-up and GUI
tests (build it once: ``cranium_twin()`` is cached per process).
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

DEMO_CASE = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
#: The planned move of the maxilla: 4 mm advancement (LPS: anterior is -y), 2 degrees about x.
MOVE = (0.0, -4.0, 0.0, 2.0, 0.0, 0.0)
#: Coarse tissue mesh: the thread needs a real solve, not accuracy.
VOXEL_MM = 8.0
#: Cranium has no mandible in its field of view: the moved segment is the maxilla/anterior
#: bone, as in tests/mechanics/test_whatif.py (below z = 20 mm, anterior of y = -150 mm),
#: here cut off by one oblique plane through (0, -150, 20) with normal (0, -1, -1):
#: the side y + z < -130 mm.
CUT_POINT = ("0", "-150", "20")
CUT_NORMAL = ("0", "-1", "-1")


@functools.lru_cache(maxsize=None)
def cranium_twin() -> Path:
    """Path of a saved ``.twin`` built from the Cranium demo case (read it; copy before changing)."""
    from app.cli import main
    from app.pipeline import apply_result, import_scan, step_mesh, step_segment
    from app.plan import TissuePlan, run_tissue_plan
    from app.project import load_case, save_case
    from imaging.landmarks import Landmark
    from mechanics.whatif import RigidMove

    folder = Path(tempfile.mkdtemp(prefix="twinplan_thread_"))
    case = import_scan(DEMO_CASE)
    apply_result(case, step_segment(case, label="bone", preset="bone"))
    apply_result(case, step_segment(case, label="skin", preset="skin"))
    apply_result(case, step_mesh(case, label="skin", decimate=0.5))
    case.set_landmark(Landmark("subnasale", (0.5, -190.0, 10.0)))
    path = str(save_case(case, folder / "cranium.twin"))
    assert main(["edit", path, "--label", "bone", "--op", "split", "--plane-point", *CUT_POINT,
                 "--plane-normal", *CUT_NORMAL, "--out-labels", "maxilla", "cranium"]) == 0
    # In place: the thread keeps the superseded version (label/maxilla~1).
    assert main(["edit", path, "--label", "maxilla", "--op", "islands", "--islands", "largest"]) == 0
    case = load_case(path)
    plan = TissuePlan("maxilla", RigidMove(MOVE[:3], MOVE[3:]), fixed=["cranium"], voxel_mm=VOXEL_MM)
    apply_result(case, run_tissue_plan(case, plan))
    return save_case(case, path)
