"""Uncertainty sweeps: Latin hypercube, serial vs a 2-worker LocalCluster, a worker killed mid-sweep, FFR bands."""
from __future__ import annotations

import os
import signal
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest

from app.scenarios import add_scenario
from app.sweep import latin_hypercube, store_sweep, summarize_samples, sweep_scenario
from imaging.errors import InputError
from tests.app.scenario_case import advancement, cranium_case, vmtk_centerline_case

SEED = 20261123
#: A cluster sweep that stops making progress fails with a message instead of hanging the suite (a sample
#: takes about a second; minutes allow for a loaded CI machine).
STALL_S = 300.0


def test_latin_hypercube_is_stratified_and_seeded():
    ranges = {"youngs_modulus_pa": (1000.0, 15000.0), "poisson_ratio": (0.40, 0.49)}
    a = latin_hypercube(ranges, 10, SEED)
    assert a == latin_hypercube(ranges, 10, SEED) and a != latin_hypercube(ranges, 10, SEED + 1)
    for name, (lo, hi) in ranges.items():
        v = np.array([s[name] for s in a])
        # One sample in each of the 10 equal strata: the defining property of a Latin hypercube.
        strata = np.floor((v - lo) / (hi - lo) * 10).astype(int)
        assert sorted(strata) == list(range(10))
    bands, prob = summarize_samples([{"ffr_x": f, "d_mm": 2 * f} for f in np.linspace(0.7, 0.9, 21)])
    assert bands["ffr_x"]["p50"] == pytest.approx(0.8) and bands["d_mm"]["p5"] == pytest.approx(1.42)
    assert prob == {"ffr_x": pytest.approx(10 / 21)}  # values strictly below 0.80
    with pytest.raises(InputError, match="--samples 0"):
        latin_hypercube(ranges, 0, SEED)


@pytest.fixture(scope="module")
def swept_case():
    case = cranium_case()
    add_scenario(case, "advance 5", "tissue", advancement())
    return case


@pytest.fixture(scope="module")
def serial(swept_case):
    return sweep_scenario(swept_case, "advance 5", samples=4, seed=SEED, workers=0)


def _outcomes(sweep) -> np.ndarray:
    keys = sorted(sweep["samples"][0]["outcomes"])
    return np.array([[s["outcomes"][k] for k in keys] for s in sweep["samples"]])


@pytest.mark.fem
@pytest.mark.slow
def test_serial_sweep_bands_on_cranium(swept_case, serial):
    assert serial["seed"] == SEED and serial["n_samples"] == 4 and serial["executor"]["mode"] == "serial"
    nu = [s["inputs"]["poisson_ratio"] for s in serial["samples"]]
    assert min(nu) >= 0.40 and max(nu) <= 0.49
    band = serial["bands"]["pronasale_displacement_mm"]
    # The nose tip follows a 5 mm advancement partly; Poisson's ratio spreads it by a few tenths of a mm.
    assert 0.5 < band["p5"] < band["p50"] < band["p95"] < 5.0
    assert band["p95"] - band["p5"] > 0.05
    # Displacement-only loading: the linear answer does not depend on E, only on nu (checked on two samples
    # with nearly the same nu would need a new draw; instead: max skin displacement is the bone's 5 mm).
    assert serial["bands"]["max_skin_displacement_mm"]["p50"] == pytest.approx(5.0, abs=1e-6)
    old = store_sweep(swept_case, "advance 5", serial)
    assert "sweep" not in old.results and swept_case.scenarios["advance 5"].results["sweep"] is serial


@pytest.mark.fem
@pytest.mark.slow
def test_cluster_sweep_equals_serial_and_survives_a_killed_worker(swept_case, serial):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    watcher = Client(cluster)
    try:
        same = sweep_scenario(swept_case, "advance 5", samples=4, seed=SEED, scheduler=cluster.scheduler_address,
                              stall_s=STALL_S)
        assert same["executor"] == {"mode": "remote", "workers": 2, "scheduler": cluster.scheduler_address}
        # Same sample function, same inputs, one process each: identical to the last bit in practice;
        # 1e-12 relative leaves room for nothing but reordered floating-point sums.
        np.testing.assert_allclose(_outcomes(same), _outcomes(serial), rtol=1e-12)
        for key, band in serial["bands"].items():
            assert same["bands"][key] == pytest.approx(band, rel=1e-12)

        killed = {}

        def kill_a_busy_worker(fraction, message):
            if killed or not message.startswith("Sample"):
                return
            pids = watcher.run(os.getpid)
            busy = {w: keys for w, keys in watcher.processing().items() if keys}
            if busy:
                worker, keys = next(iter(busy.items()))
                killed.update(pid=pids[worker], keys=list(keys))
                os.kill(pids[worker], signal.SIGKILL)

        t0 = time.perf_counter()
        survived = sweep_scenario(swept_case, "advance 5", samples=4, seed=SEED,
                                  scheduler=cluster.scheduler_address, progress=kill_a_busy_worker,
                                  stall_s=STALL_S)
        assert killed, "no worker was busy when the first sample finished"
        with pytest.raises(ProcessLookupError):
            os.kill(killed["pid"], 0)  # really gone
        # The tasks the dead worker held were retried elsewhere and give the serial answer.
        np.testing.assert_allclose(_outcomes(survived), _outcomes(serial), rtol=1e-12)
        print(f"killed worker {killed['pid']} holding {len(killed['keys'])} task(s); "
              f"sweep finished in {time.perf_counter() - t0:.1f} s")

        calls = []

        def cancel_after_first():
            return bool(calls)

        with pytest.raises(CancelledError):
            sweep_scenario(swept_case, "advance 5", samples=4, seed=SEED, scheduler=cluster.scheduler_address,
                           progress=lambda f, m: calls.append(m) if m.startswith("Sample") else None,
                           cancelled=cancel_after_first)
    finally:
        watcher.close()
        cluster.close()


def test_sweep_refuses_bad_input(swept_case):
    with pytest.raises(InputError, match="stiffness"):
        sweep_scenario(swept_case, "advance 5", samples=4, seed=1, ranges={"stiffness": (1, 2)}, workers=0)
    with pytest.raises(InputError, match="poisson_ratio"):
        sweep_scenario(swept_case, "advance 5", samples=4, seed=1, ranges={"poisson_ratio": (0.4, 0.6)}, workers=0)
    with pytest.raises(InputError, match="--scheduler"):
        sweep_scenario(swept_case, "advance 5", samples=4, seed=1, scheduler="localhost:8786")
    with pytest.raises(InputError, match="no such scenario"):
        sweep_scenario(swept_case, "nope", samples=4, seed=1, workers=0)


def test_ffr_sweep_on_vmtk_centerlines():
    case = vmtk_centerline_case()
    add_scenario(case, "lesion 45%", "ffr", {"centerline": "centerline", "lesions": [
        {"branch": 1, "position_mm": 20.0, "severity": 0.45, "length_mm": 10.0}]})
    sweep = sweep_scenario(case, "lesion 45%", samples=40, seed=SEED, workers=0)
    band = sweep["bands"]["ffr_branch_1"]
    assert band["p5"] < 0.80 < band["p95"] and band["p95"] - band["p5"] > 0.05  # borderline lesion
    p = sweep["probability_ffr_below_0_80"]
    assert 0.1 < p["ffr_branch_1"] < 0.95 and p["ffr_branch_2"] == 0.0
    values = np.array([s["outcomes"]["ffr_branch_1"] for s in sweep["samples"]])
    below = np.mean(values < 0.80)
    assert p["ffr_branch_1"] == below
    # Higher microvascular resistance means less hyperaemic flow, a smaller drop, a higher FFR.
    scale = np.array([s["inputs"]["outlet_resistance_scale"] for s in sweep["samples"]])
    assert np.corrcoef(np.argsort(np.argsort(scale)), np.argsort(np.argsort(values)))[0, 1] > 0.5
