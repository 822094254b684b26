"""Solves in a worker process: same numbers as in-process, progress, cancel, crashes contained."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest

from imaging.errors import InputError, SolverError
from mechanics.process_runner import describe_exit, run_in_process, set_preload

set_preload(["app.plan"])  # as the GUI does: the worker starts without seconds of imports

CANCEL_LIMIT_S = 2.0  # issue: cancel stops the solve within about 2 s


@pytest.fixture(scope="module")
def cranium_case(demo_case_path):
    pytest.importorskip("dolfinx", reason="Debian python3-dolfinx-real is installed by make setup")
    from tests.mechanics.cranium import cranium_case

    return cranium_case(demo_case_path)


# -- steps run in the child (module level: the child imports them by name) ----------------------
def crash(how: str, *, progress=None, cancelled=None) -> None:
    """Die hard after one progress message."""
    progress(0.5, f"about to {how}")
    if how == "abort":
        os.abort()
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_steps(n: int, seconds: float, *, ignore_term: bool = False, progress=None, cancelled=None) -> int:
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for k in range(n):
        progress(k / n, f"step {k}")
        time.sleep(seconds)
    return n


def raise_input_error(*, progress=None, cancelled=None) -> None:
    raise InputError("--segment nope: no such label")


def big_array(n: int, *, progress=None, cancelled=None) -> dict:
    return {"x": np.arange(n, dtype=float), "pid": os.getpid()}


# -- generic behaviour ---------------------------------------------------------------------------
def test_result_errors_and_crashes_come_back():
    out = run_in_process(big_array, 2_000_000)  # 16 MB through the result file
    assert out["pid"] != os.getpid() and out["x"][-1] == 1_999_999.0
    with pytest.raises(InputError, match="no such label") as info:
        run_in_process(raise_input_error)
    assert "worker process traceback" in "".join(getattr(info.value, "__notes__", []))
    seen = []
    with pytest.raises(SolverError, match="SIGABRT") as info:
        run_in_process(crash, "abort", progress=lambda f, m: seen.append(m), title="tissue solve")
    assert "tissue solve" in str(info.value) and seen == ["about to abort"]
    with pytest.raises(SolverError, match="SIGKILL"):
        run_in_process(crash, "kill")
    with pytest.raises(SolverError, match="no answer within 0.5 s"):
        run_in_process(sleep_steps, 100, 0.1, timeout_s=0.5)
    assert describe_exit(-11) == "killed by signal SIGSEGV (11)" and describe_exit(3) == "exit code 3"
    assert not multiprocessing.active_children()


def test_cancel_terminates_even_a_child_ignoring_sigterm():
    for ignore in (False, True):
        messages, asked = [], []

        def cancelled():
            if len(messages) >= 2 and not asked:
                asked.append(time.perf_counter())
            return bool(asked)

        with pytest.raises(CancelledError):
            run_in_process(sleep_steps, 100, 0.2, ignore_term=ignore, kill_after_s=0.5,
                           progress=lambda f, m: messages.append(m), cancelled=cancelled)
        stopped = time.perf_counter() - asked[0]
        assert stopped < CANCEL_LIMIT_S, stopped
        assert messages[:2] == ["step 0", "step 1"]
    assert not multiprocessing.active_children()


# -- real tissue solves on the Cranium CT ----------------------------------------------------------
@pytest.mark.fem
@pytest.mark.slow
def test_tissue_solve_in_worker_equals_in_process(cranium_case):
    from app.plan import TissuePlan, build_live_plan, plan_case, run_tissue_plan
    from mechanics.whatif import RigidMove

    move = RigidMove((0.0, -5.0, 0.0), (0.0, 0.0, 3.0))
    plan = TissuePlan("maxilla", move, fixed=["bone"], voxel_mm=10.0)
    part = plan_case(cranium_case, plan)
    t0 = time.perf_counter()
    here = run_tissue_plan(part, plan)
    t_here = time.perf_counter() - t0
    messages = []
    t0 = time.perf_counter()
    there = run_in_process(run_tissue_plan, part, plan, progress=lambda f, m: messages.append((f, m)))
    t_there = time.perf_counter() - t0
    print(f"\nlinear 10 mm: in-process {t_here:.2f} s, worker process {t_there:.2f} s")
    # Same code, same serial solver and options: equal up to round-off in GAMG's setup.
    a, b = here.item["displacement_mm"], there.item["displacement_mm"]
    assert np.abs(a - b).max() <= 1e-9 * np.abs(a).max()
    assert there.report["dofs"] == here.report["dofs"] and there.report["mpi_ranks"] == 1
    assert there.report["max_skin_displacement_mm"] == pytest.approx(here.report["max_skin_displacement_mm"],
                                                                     rel=1e-9)
    assert messages[-1] == (1.0, "Prediction ready") and len(messages) >= 3

    # The live plan built in the worker superposes to the same skin as one built here.
    live, skin = run_in_process(build_live_plan, part, plan)
    assert skin is None and live.responses.V is None  # arrays only: no dolfinx objects cross over
    np.testing.assert_allclose(live.skin(move)["displacement_mm"], a[_order(here.item, live.base)],
                               atol=1e-6 * np.abs(a).max())
    with pytest.raises(InputError, match="another process"):
        live.responses.solve_move(move)


@pytest.mark.fem
@pytest.mark.slow
def test_cancelling_a_tissue_solve_leaves_the_case_unchanged(cranium_case):
    from app.plan import TissuePlan, build_live_plan, plan_case
    from mechanics.whatif import RigidMove

    plan = TissuePlan("maxilla", RigidMove(), fixed=["bone"], skin="skin_for_cancel", voxel_mm=10.0)
    labels, provenance = dict(cranium_case.labels), dict(cranium_case.provenance)
    asked = []

    def progress(fraction, message):
        if message.startswith("Unit response") and not asked:
            asked.append(time.perf_counter())  # cancel in the middle of the unit solves

    with pytest.raises(CancelledError):
        run_in_process(build_live_plan, plan_case(cranium_case, plan), plan, progress=progress,
                       cancelled=lambda: bool(asked))
    assert time.perf_counter() - asked[0] < CANCEL_LIMIT_S
    assert cranium_case.labels == labels and cranium_case.provenance == provenance
    assert "skin_for_cancel" not in cranium_case.labels
    assert not multiprocessing.active_children()


def _order(full_surface, base) -> np.ndarray:
    from scipy.spatial import cKDTree

    return cKDTree(full_surface["original_points_mm"]).query(base["original_points_mm"])[1]
