"""Uncertainty sweep on the Cranium case: serial vs a 2-worker Dask LocalCluster (start-up included).

A 5 mm maxillary advancement (the Le Fort I-like segment of the tissue tests), 8 mm elements,
Latin hypercube over Young's modulus and Poisson's ratio. Baseline in the same run: the serial sweep
in this process. Reported, no goal: two worker processes can at best halve the wall time on two cores,
and the cluster start-up (worker processes importing dolfinx) is paid on every sweep.
"""
from __future__ import annotations

import time

SAMPLES = 16
VOXEL_MM = 8.0


def _case():
    from app.pipeline import DEMO_CASE
    from tests.mechanics.cranium import cranium_case  # the same case as the tissue tests

    return cranium_case(DEMO_CASE)


def run(repeat: int = 1) -> list[dict]:
    from app.pipeline import DEMO_CASE
    from app.scenarios import add_scenario
    from app.sweep import sweep_scenario

    if not DEMO_CASE.is_file():
        return []
    case = _case()
    add_scenario(case, "advance 5", "tissue", {"segment": "maxilla", "move": [0, -5, 0, 0, 0, 0],
                                                "fixed": ["bone"], "voxel_mm": VOXEL_MM})
    t0 = time.perf_counter()
    serial = sweep_scenario(case, "advance 5", samples=SAMPLES, seed=1, workers=0)
    serial_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dask = sweep_scenario(case, "advance 5", samples=SAMPLES, seed=1, workers=2)
    dask_s = time.perf_counter() - t0
    same = all(a["outcomes"] == b["outcomes"] for a, b in zip(serial["samples"], dask["samples"]))
    band = serial["bands"]["pronasale_displacement_mm"]
    print(f"sweep bands (pronasale, mm): p5 {band['p5']:.3f} p50 {band['p50']:.3f} p95 {band['p95']:.3f}; "
          f"2-worker answer identical to serial: {same}")
    return [{"name": f"tissue sweep {SAMPLES} samples, 2 Dask workers vs serial", "ours_s": dask_s,
             "baseline_s": serial_s, "ratio": serial_s / dask_s, "goal": None}]
