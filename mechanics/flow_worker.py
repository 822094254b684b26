"""Run a 3D flow solve in a separate process (optionally under MPI) with progress and cancel.

Command line (what the worker process runs)::

    python -m mechanics.flow_worker MESH.npz OUT_DIR [--inlet-flow Q] [--outlet-pressure NAME=PA ...]
    mpirun --allow-run-as-root -n 2 python -m mechanics.flow_worker MESH.npz OUT_DIR

Rank 0 prints one JSON object per line on stdout: ``{"progress": f, "message": m}``
while solving, then ``{"done": true}``; it writes ``OUT_DIR/result.json`` (FFR,
flows, report) and ``OUT_DIR/result.vtu`` (pressure_mmhg, velocity, ffr) and
``OUT_DIR/wall.vtp`` (wss_pa). ``FlowWorker`` drives it from the GUI or the CLI.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Callable, Optional

from imaging.errors import InputError, SolverError

ROOT = Path(__file__).resolve().parents[1]


class FlowWorker:
    """A flow solve in a child process: ``start()``, ``progress`` callbacks, ``cancel()``, ``wait()``.

    Parameters
    ----------
    mesh_path : Path
        ``LumenMesh.save`` file (.npz).
    out_dir : Path
        Where the worker writes result.json / result.vtu / wall.vtp.
    n_procs : int
        MPI ranks (1 = plain subprocess).
    progress : callable, optional
        ``progress(fraction, message)``, called from a reader thread.
    extra_args : list of str
        More worker command-line arguments (``--inlet-flow``, ``--outlet-pressure``).
    """

    def __init__(self, mesh_path: Path, out_dir: Path, *, n_procs: int = 1,
                 progress: Optional[Callable[[float, str], None]] = None, extra_args: Optional[list] = None):
        self.mesh_path, self.out_dir = Path(mesh_path), Path(out_dir)
        if not self.mesh_path.is_file():
            raise InputError(f"flow worker: mesh file {self.mesh_path} not found")
        self.n_procs, self.progress = int(n_procs), progress
        self.extra = list(extra_args or [])
        self.proc: Optional[subprocess.Popen] = None
        self._cancelled = False
        self._log: list[str] = []

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "mechanics.flow_worker", str(self.mesh_path), str(self.out_dir), *self.extra]
        if self.n_procs > 1:
            cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", str(self.n_procs), *cmd]
        return cmd

    def start(self) -> "FlowWorker":
        self.out_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=ROOT, env=env, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._log.append(line)
            if line.startswith("{") and self.progress is not None:
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "progress" in msg:
                    self.progress(float(msg["progress"]), str(msg.get("message", "")))

    def cancel(self) -> None:
        """Terminate the worker (and its MPI ranks: the whole process group)."""
        self._cancelled = True
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout: Optional[float] = None) -> dict:
        """Wait for the result; returns result.json as a dict.

        Raises
        ------
        CancelledError
            After ``cancel()``.
        SolverError
            The worker failed (its output is in the message).
        """
        rc = self.proc.wait(timeout=timeout)
        if self._cancelled:
            raise CancelledError("flow solve cancelled")
        out = self.out_dir / "result.json"
        if rc != 0 or not out.is_file():
            raise SolverError(f"flow worker exited with {rc}: {''.join(self._log[-15:])}")
        return json.loads(out.read_text())


def _parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mechanics.flow_worker")
    p.add_argument("mesh", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--inlet-flow", type=float, help="prescribed inlet flow, m3/s")
    p.add_argument("--outlet-pressure", action="append", default=[], help="NAME=PA fixed outlet pressure")
    p.add_argument("--linear-solver", default="auto", choices=["auto", "direct", "iterative"])
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    from mpi4py import MPI

    from imaging.lumen_mesh import LumenMesh
    from mechanics.flow import solve_flow

    comm = MPI.COMM_WORLD
    rank0 = comm.rank == 0

    def progress(f: float, m: str) -> None:
        if rank0:
            print(json.dumps({"progress": round(f, 4), "message": m}), flush=True)

    lumen = LumenMesh.load(args.mesh) if rank0 else None
    fixed = dict(kv.split("=", 1) for kv in args.outlet_pressure) or None
    res = solve_flow(lumen, inlet_flow_m3s=args.inlet_flow,
                     outlet_pressure_pa={k: float(v) for k, v in fixed.items()} if fixed else None,
                     linear_solver=args.linear_solver, comm=comm, progress=progress)
    if rank0:
        args.out.mkdir(parents=True, exist_ok=True)
        res.mesh.save(args.out / "result.vtu")
        res.wall.save(args.out / "wall.vtp")
        data = {**res.to_json(), "flows_m3s": res.flows_m3s, "outlet_pressure_pa": res.outlet_pressure_pa,
                "p_aortic_pa": res.p_aortic_pa, "report": res.report}
        (args.out / "result.json").write_text(json.dumps(data, indent=1, default=float))
        print(json.dumps({"done": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
