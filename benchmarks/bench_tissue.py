"""Live what-if: per-update time of superposed unit responses vs a full linear solve."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

DEMO = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")


def compute_unit_responses(mesh, center, *, progress=None, cancelled=None) -> np.ndarray:
    """The 12 unit responses of ``mesh`` (a TissueMesh); module level so a worker process can run it."""
    from mechanics.tissue import Material
    from mechanics.tissue_mesh import CUT_TAG, FIRST_BONE_TAG
    from mechanics.whatif import UnitResponses

    dmesh, tags = mesh.to_dolfinx()
    ur = UnitResponses(dmesh, tags, Material(3000.0, 0.45), FIRST_BONE_TAG, [CUT_TAG], center)
    ur.compute(progress=progress, cancelled=cancelled)
    return ur.fields


def run(repeat: int = 3) -> list[dict]:
    if not DEMO.is_file():
        return []
    from imaging.invesalius import load_invesalius_project
    from imaging.segment import HU_PRESETS, segment_threshold
    from mechanics.tissue import Material
    from mechanics.tissue_mesh import CUT_TAG, FIRST_BONE_TAG, build_tissue_mesh
    from mechanics.whatif import RigidMove, UnitResponses

    vol = load_invesalius_project(DEMO, load_surfaces=False).volume
    skin = segment_threshold(vol, HU_PRESETS["skin"], name="skin")
    bone = segment_threshold(vol, HU_PRESETS["bone"], name="bone")
    mesh = build_tissue_mesh(skin, {"bone": bone}, voxel_mm=4.0)
    n_nodes = len(mesh.points)
    dmesh, tags = mesh.to_dolfinx()
    center = mesh.points[mesh.nodes_on(FIRST_BONE_TAG)].mean(axis=0)
    ur = UnitResponses(dmesh, tags, Material(3000.0, 0.45), FIRST_BONE_TAG, [CUT_TAG], center)
    ur.compute()
    rng = np.random.default_rng(0)
    moves = [RigidMove(tuple(rng.uniform(-5, 5, 3)), tuple(rng.uniform(-5, 5, 3))) for _ in range(50)]
    t0 = time.perf_counter()
    for m in moves:
        ur.superpose(m)
    per_update = (time.perf_counter() - t0) / len(moves)
    t0 = time.perf_counter()
    direct = ur.solve_move(moves[0])
    full = time.perf_counter() - t0
    rel = float(np.linalg.norm(ur.superpose(moves[0]) - direct) / np.linalg.norm(direct))
    from mechanics.process_runner import run_in_process

    t0 = time.perf_counter()
    fields = run_in_process(compute_unit_responses, mesh, center, title="unit responses")
    in_worker = time.perf_counter() - t0
    same = float(np.abs(fields - ur.fields).max() / np.abs(ur.fields).max())
    name = f"tissue update ({n_nodes} nodes) vs full solve, rel diff {rel:.1e}"
    return [
        {"name": name, "ours_s": per_update, "baseline_s": full, "ratio": full / per_update, "goal": 100.0},
        {"name": "tissue update under 50 ms (target / time)", "ours_s": per_update, "baseline_s": 0.05,
         "ratio": 0.05 / per_update, "goal": 1.0},
        {"name": f"unit responses precompute: 12 solves ({ur.report['dofs']} dofs)", "ours_s": ur.report["seconds"],
         "baseline_s": 12 * full, "ratio": 12 * full / ur.report["seconds"], "goal": None},
        {"name": f"unit responses in a worker process vs in-process (max rel diff {same:.1e})",
         "ours_s": in_worker, "baseline_s": ur.report["seconds"], "ratio": ur.report["seconds"] / in_worker,
         "goal": None},
    ]
