"""`mpirun -n 2 twinplan tissue ...` gives the serial answer on the Cranium CT."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dolfinx", reason="Debian python3-dolfinx-real is installed by make setup")

pytestmark = [pytest.mark.fem, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
TWINPLAN = Path(sys.executable).parent / "twinplan"
#: CG stops at a relative residual of 1e-10; GAMG's aggregates (so the iterates) differ with the
#: partition, so serial and parallel answers agree to about that, not to round-off.
REL_TOL = 1e-6


MOVE = "0,-5,0,0,0,3"


def _tissue(case: Path, *prefix: str) -> tuple[dict, float]:
    cmd = [*prefix, str(TWINPLAN), "tissue", str(case), "--segment", "maxilla", "--fixed", "bone",
           "--move", MOVE, "--voxel-mm", "10", "--json"]
    t0 = time.perf_counter()
    # env: the Python snapshot, without what MPI_Init (dolfinx imported by pytest) set in the C
    # environment; mpirun started with those thinks it runs inside a job and exits 1.
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), time.perf_counter() - t0


def test_mpi_two_ranks_equal_serial(demo_case_path, tmp_path):
    from app.plan import TissuePlan, run_tissue_plan
    from app.project import load_case, save_case
    from mechanics.whatif import RigidMove
    from tests.mechanics.cranium import cranium_case

    mpirun = shutil.which("mpirun")
    assert mpirun, "mpirun missing: Debian's openmpi-bin comes with python3-dolfinx-real"
    case = save_case(cranium_case(demo_case_path), tmp_path / "cranium")
    parallel, t_parallel = _tissue(case, mpirun, "--allow-run-as-root", "-n", "2")
    # The serial reference in this process (what `twinplan tissue --json` prints: tests/mechanics/test_whatif.py
    # checks the serial CLI); it saves launching a third interpreter.
    plan = TissuePlan("maxilla", RigidMove.parse(MOVE), fixed=["bone"], voxel_mm=10.0)
    serial = run_tissue_plan(load_case(case), plan).report
    print(f"\nserial solve {serial['seconds']} s; mpirun -n 2: {t_parallel:.1f} s in all, "
          f"solve {parallel['seconds']} s")
    assert serial["mpi_ranks"] == 1 and parallel["mpi_ranks"] == 2
    # The same mesh: no vertex duplicated along the partition boundary (see tissue_mesh._well_composed).
    assert parallel["dofs"] == serial["dofs"] and parallel["mesh"] == serial["mesh"]
    top = serial["max_skin_displacement_mm"]
    assert 0.5 < top < 10.0
    assert parallel["max_skin_displacement_mm"] == pytest.approx(top, rel=REL_TOL)
    assert set(parallel["landmarks"]) == set(serial["landmarks"]) == {"pronasale", "soft_tissue_over_segment"}
    worst = 0.0
    for name, mark in serial["landmarks"].items():
        other = parallel["landmarks"][name]
        assert other["position_mm"] == mark["position_mm"]
        worst = max(worst, float(np.abs(np.subtract(other["displacement_mm"], mark["displacement_mm"])).max()))
    print(f"largest landmark difference {worst:.2e} mm (max skin displacement {top:.3f} mm)")
    assert worst <= REL_TOL * top
