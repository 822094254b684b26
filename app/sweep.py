"""Uncertainty sweeps: Latin hypercube over uncertain parameters, solved through Dask (no Qt).

A sweep takes a scenario, samples its uncertain parameters (tissue: Young's
modulus and Poisson's ratio; FFR: outlet resistance scale and aortic
pressure; ranges in ``app.scenario_kinds``) with a seeded Latin hypercube,
runs the kind's solver once per sample and summarises every outcome with
5/50/95 percentiles (and P(FFR < 0.80) for FFR outcomes).

Where the samples run: ``workers=0`` in this process (serial); otherwise on
Dask: a ``distributed.LocalCluster`` of ``workers`` processes by default, or
the cluster at ``scheduler="tcp://HOST:PORT"``. The problem is prepared once
(mesh, tags) and travels with each sample's task. Each task has ``retries``;
a worker that dies mid-task has its tasks rescheduled by the scheduler (up to
``distributed.scheduler.allowed-failures`` times), so a killed worker costs
time, not the sweep. The same sample function runs in both modes, so a
cluster run gives the serial answer.
"""
from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import CancelledError
from typing import Optional

import numpy as np

from app.case import Case
from app.scenario_kinds import KINDS, jsonable
from app.scenarios import Scenario, get_scenario, put_scenario
from imaging.errors import InputError, SolverError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress

log = logging.getLogger(__name__)

PERCENTILES = (5, 50, 95)
FFR_THRESHOLD = 0.80  # mechanics.physiology.FFR_THRESHOLD: ischaemia cut-off of FFR-guided PCI trials
MAX_SAMPLES = 10000


def latin_hypercube(ranges: dict[str, tuple[float, float]], n: int, seed: int) -> list[dict[str, float]]:
    """``n`` samples of the parameters in ``ranges`` (uniform on [low, high]) from a seeded Latin hypercube.

    Parameters
    ----------
    ranges : dict
        Parameter name -> (low, high), in the parameter's unit (Pa, mmHg, dimensionless).
    n : int
        Number of samples (each range is split into ``n`` strata, one sample per stratum).
    seed : int
        Seed of ``scipy.stats.qmc.LatinHypercube``: the same seed gives the same samples.

    Returns
    -------
    list of dict
        One {parameter: value} per sample.
    """
    from scipy.stats import qmc

    if not 1 <= n <= MAX_SAMPLES:
        raise InputError(f"--samples {n}: use 1 to {MAX_SAMPLES}")
    for name, (lo, hi) in ranges.items():
        if not lo <= hi:
            raise InputError(f"uncertain parameter {name}: low {lo} above high {hi}")
    names = list(ranges)
    unit = qmc.LatinHypercube(d=len(names), seed=np.random.default_rng(seed)).random(n)
    lo = np.array([ranges[k][0] for k in names])
    hi = np.array([ranges[k][1] for k in names])
    values = lo + unit * (hi - lo)
    return [{k: float(v) for k, v in zip(names, row)} for row in values]


def summarize_samples(outcomes: list[dict[str, float]]) -> tuple[dict, dict]:
    """Percentile bands per outcome and P(value < 0.80) for FFR outcomes (keys starting ``ffr``).

    Returns
    -------
    bands : dict
        {outcome: {"p5", "p50", "p95", "mean", "min", "max"}} (the outcome's unit).
    probability : dict
        {ffr outcome: fraction of samples below 0.80}.
    """
    bands, probability = {}, {}
    for key in outcomes[0]:
        v = np.array([o[key] for o in outcomes], dtype=float)
        p = np.percentile(v, PERCENTILES)
        bands[key] = {f"p{q}": float(x) for q, x in zip(PERCENTILES, p)}
        bands[key].update(mean=float(v.mean()), min=float(v.min()), max=float(v.max()))
        if key.startswith("ffr"):
            probability[key] = float(np.mean(v < FFR_THRESHOLD))
    return bands, probability


def _evaluate_sample(kind: str, setup, index: int, sample: dict) -> tuple[int, dict]:
    """One sample (runs on a Dask worker or here): its index and outcomes."""
    return index, KINDS[kind].evaluate(setup, sample)


def sweep_scenario(
    case: Case,
    name: str,
    *,
    samples: int,
    seed: int,
    ranges: Optional[dict[str, tuple[float, float]]] = None,
    workers: int = 2,
    scheduler: Optional[str] = None,
    retries: int = 2,
    stall_s: Optional[float] = None,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> dict:
    """Run an uncertainty sweep of scenario ``name`` (results are returned, not stored).

    Parameters
    ----------
    case : Case
        The case holding the scenario and its input items.
    name : str
        Scenario to sweep; its parameters are the centre, the sampled ones are replaced per sample.
    samples, seed : int
        Number of Latin hypercube samples and its seed (recorded in the result).
    ranges : dict, optional
        {parameter: (low, high)}; default: the kind's ``uncertain`` ranges.
    workers : int
        0: serial in this process; otherwise the LocalCluster's worker processes (ignored with ``scheduler``).
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://HOST:PORT``).
    retries : int
        Extra attempts per sample when it raises (worker deaths are retried by the scheduler).
    stall_s : float, optional
        On Dask, give up (SolverError) when no sample has finished for this long, s (default: wait).
    progress, cancelled : callables
        ``progress(fraction, message)``; ``cancelled()`` stops the sweep (CancelledError).

    Returns
    -------
    dict
        JSON-able: ``scenario``, ``kind``, ``seed``, ``n_samples``, ``parameters`` {name: {low, high,
        distribution}}, ``samples`` [{"inputs", "outcomes"}], ``bands`` {outcome: {p5, p50, p95, mean, min, max}},
        ``probability_ffr_below_0_80`` {ffr outcome: p}, ``executor`` {mode, workers, scheduler},
        ``seconds``.

    Raises
    ------
    InputError
        Unknown scenario or parameter, bad sample count or workers, unreachable scheduler.
    SolverError
        A sample failed after its retries.
    concurrent.futures.CancelledError
        ``cancelled()`` became true.
    """
    progress = progress or no_progress
    t0 = time.perf_counter()
    scenario = get_scenario(case, name)
    kind = KINDS[scenario.kind]
    ranges = dict(ranges or kind.uncertain)
    unknown = set(ranges) - set(kind.check(scenario.params))
    if unknown:
        raise InputError(f"sweep: {', '.join(sorted(unknown))} is not a parameter of {scenario.kind} scenarios")
    if workers < 0:
        raise InputError(f"--workers {workers}: use 0 (serial) or more")
    if scheduler is not None and not scheduler.startswith(("tcp://", "tls://", "inproc://")):
        raise InputError(f"--scheduler {scheduler}: expected tcp://HOST:PORT")
    draws = latin_hypercube(ranges, samples, seed)
    for key, ends in ranges.items():  # a range the solver refuses fails here, not on a worker
        for value in ends:
            kind.check({**scenario.params, key: value})
    progress(0.02, "Preparing the problem")
    setup = kind.prepare(case, scenario.params)
    check_cancelled(cancelled)
    if scheduler is None and workers == 0:
        outcomes, executor = _run_serial(scenario.kind, setup, draws, progress, cancelled), {
            "mode": "serial", "workers": 0, "scheduler": None}
    else:
        outcomes, executor = _run_dask(scenario.kind, setup, draws, workers, scheduler, retries, stall_s,
                                       progress, cancelled)
    bands, probability = summarize_samples(outcomes)
    progress(1.0, f"Sweep of {samples} samples done")
    return jsonable({
        "scenario": scenario.name, "kind": scenario.kind, "seed": int(seed), "n_samples": samples,
        "parameters": {k: {"low": lo, "high": hi, "distribution": "uniform"} for k, (lo, hi) in ranges.items()},
        "samples": [{"inputs": d, "outcomes": o} for d, o in zip(draws, outcomes)],
        "bands": bands, "probability_ffr_below_0_80": probability, "executor": executor,
        "seconds": round(time.perf_counter() - t0, 3)})


def _run_serial(kind: str, setup, draws: list[dict], progress: ProgressFn, cancelled) -> list[dict]:
    out = []
    for i, sample in enumerate(draws):
        check_cancelled(cancelled)
        out.append(_evaluate_sample(kind, setup, i, sample)[1])
        progress(0.05 + 0.95 * (i + 1) / len(draws), f"Sample {i + 1}/{len(draws)}")
    return out


def _connect(workers: int, scheduler: Optional[str]):
    """A Dask client (and the LocalCluster it owns, or None for a remote scheduler)."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--scheduler {scheduler}: cannot connect ({exc})") from exc
    # One thread per worker process: PETSc solves are single-threaded and each worker holds its own mesh.
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _run_dask(kind: str, setup, draws: list[dict], workers: int, scheduler: Optional[str], retries: int,
              stall_s: Optional[float], progress: ProgressFn, cancelled) -> tuple[list[dict], dict]:
    from distributed import wait

    progress(0.04, "Starting Dask workers" if scheduler is None else f"Connecting to {scheduler}")
    client, cluster = _connect(workers, scheduler)
    futures = []
    try:
        n_workers = len(client.scheduler_info()["workers"])
        if n_workers == 0:
            client.wait_for_workers(1, timeout=60)
            n_workers = len(client.scheduler_info()["workers"])
        # Each task carries the prepared problem itself (a few MB): a worker started to replace a killed one
        # needs nothing from its peers, and no data is lost with a worker (scattered data would be).
        token = uuid.uuid4().hex[:8]
        futures = [client.submit(_evaluate_sample, kind, setup, i, s, key=f"sweep-{token}-{i}",
                                 retries=retries, pure=False) for i, s in enumerate(draws)]
        outcomes: list[Optional[dict]] = [None] * len(draws)
        pending, done_count, last = set(futures), 0, time.perf_counter()
        while pending:
            if cancelled is not None and cancelled():
                client.cancel(futures)
                raise CancelledError("sweep cancelled by user")
            if stall_s is not None and time.perf_counter() - last > stall_s:
                client.cancel(futures)
                raise SolverError(f"sweep stalled: no sample finished in {stall_s:.0f} s "
                                  f"({done_count}/{len(draws)} done, scheduler {client.scheduler.address})")
            try:
                finished, pending = wait(pending, timeout=0.25, return_when="FIRST_COMPLETED")
            except TimeoutError:
                continue
            last = time.perf_counter()
            for fut in finished:
                try:
                    index, result = fut.result()
                except (InputError, SolverError):
                    raise
                except Exception as exc:  # noqa: BLE001 -- a worker-side failure reaches the user as a solver error
                    raise SolverError(f"sweep sample failed after {retries} retries: "
                                      f"{type(exc).__name__}: {exc}") from exc
                outcomes[index] = result
                done_count += 1
                progress(0.05 + 0.95 * done_count / len(draws), f"Sample {done_count}/{len(draws)}")
        mode = "remote" if scheduler else "local"
        return outcomes, {"mode": mode, "workers": n_workers, "scheduler": scheduler}
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def store_sweep(case: Case, name: str, sweep: dict) -> Scenario:
    """Store a sweep in ``results["sweep"]`` of scenario ``name``; returns the previous scenario (undo)."""
    old = get_scenario(case, name)
    put_scenario(case, Scenario(old.name, old.kind, old.params, old.parent, dict(old.results, sweep=sweep),
                                dict(old.surfaces), old.provenance))
    return old
