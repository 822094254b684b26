"""Run one solver step in a separate process: progress back, cancel by terminate, crashes contained.

A finite-element solve can take minutes and, in native code (PETSc, MPI,
JIT-compiled forms), can abort or segfault. Run in the GUI's process, the first
freezes the window and the second kills it. ``run_in_process`` runs a picklable
step function in a fresh interpreter (never a fork of the caller, which may
hold Qt, VTK, MPI or PETSc state that is unsafe to fork; see ``START_METHOD``)
and waits for it:

- progress: the child's ``progress(fraction, message)`` calls come back
  through a pipe and are passed to the caller's ``progress``;
- cancel: when the caller's ``cancelled()`` turns true the child is
  terminated (SIGTERM, then SIGKILL after ``kill_after_s``) and
  ``concurrent.futures.CancelledError`` is raised; nothing the child did
  reaches the caller;
- crash: a child that dies without answering (segfault, abort, out of memory)
  gives a ``SolverError`` naming the exit code or signal;
- errors: an exception raised by the step is re-raised in the caller with its
  type (``InputError``, ``SolverError``...) and the child's traceback as a note;
- data: the call (function, arguments) and the result travel as pickle files
  (protocol 5) in a private temporary folder, not through the pipe, so large
  numpy arrays cost one write and one read.

Generic: any module-level function ``fn(*args, progress=, cancelled=, **kwargs)``
whose arguments and result pickle. The caller blocks (call it from a worker
thread in a GUI); waiting releases the GIL.
"""
from __future__ import annotations

import logging
import multiprocessing
import pickle
import signal
import tempfile
import time
import traceback
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any, Callable, Optional

from imaging.errors import SolverError
from imaging.progress import CancelledFn, ProgressFn, no_progress

log = logging.getLogger(__name__)

#: Never plain fork: forking a process that holds Qt/VTK/MPI/PETSc state is unsafe. A forkserver
#: is a fresh interpreter (started once, by spawning) that imports ``PRELOAD`` and forks each
#: child from that clean state: the child skips seconds of imports (``vtk`` alone takes ~6 s
#: on this machine) yet inherits nothing from the caller. ``"spawn"`` also works, only slower.
START_METHOD = "forkserver"
#: Imported once by the forkserver. Nothing that initialises MPI or PETSc (mpi4py, petsc4py,
#: dolfinx): forking after MPI_Init is unsafe, so children import those themselves.
PRELOAD = ["numpy", "scipy.sparse", "scipy.spatial", "scipy.ndimage", "pyvista", "vtk"]
_PICKLE = 5


def set_preload(modules: list[str]) -> None:
    """Add modules for the forkserver to import (before its first use; later calls are ignored).

    Raises
    ------
    ValueError
        For modules that initialise MPI/PETSc (unsafe to fork from).
    """
    unsafe = [m for m in modules if m.split(".")[0] in ("mpi4py", "petsc4py", "dolfinx")]
    if unsafe:
        raise ValueError(f"set_preload: {unsafe} initialise MPI/PETSc; a forked child must import them itself")
    PRELOAD.extend(m for m in modules if m not in PRELOAD)


def warm_up() -> None:
    """Start the forkserver now (it imports ``PRELOAD`` in the background), so the first solve is quick."""
    if _context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _context():
    if START_METHOD == "forkserver" and "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(PRELOAD))
        return ctx
    return multiprocessing.get_context("spawn")


def _never_cancelled() -> bool:
    return False


def _child_main(call_path: str, result_path: str, conn) -> None:
    """Entry point of the child: load the call, run it, write the result, report on ``conn``."""
    try:
        with open(call_path, "rb") as f:
            fn, args, kwargs = pickle.load(f)

        def progress(fraction: float, message: str = "") -> None:
            conn.send(("progress", float(fraction), str(message)))

        result = fn(*args, progress=progress, cancelled=_never_cancelled, **kwargs)
        with open(result_path, "wb") as f:
            pickle.dump(result, f, protocol=_PICKLE)
        conn.send(("done",))
    except BaseException as exc:  # noqa: BLE001 -- every failure goes back to the parent
        text = traceback.format_exc()
        try:
            payload = pickle.dumps(exc, protocol=_PICKLE)
            pickle.loads(payload)  # some exceptions pickle but do not unpickle
        except Exception:  # noqa: BLE001
            payload = None
        conn.send(("error", payload, type(exc).__name__, str(exc), text))
    finally:
        conn.close()


def describe_exit(exitcode: Optional[int]) -> str:
    """Human description of a child's exit code ("signal SIGABRT", "exit code 3")."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name} ({-exitcode})"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _stop(proc, kill_after_s: float) -> None:
    """Terminate the child; kill it if it has not gone after ``kill_after_s``."""
    if not proc.is_alive():
        proc.join()
        return
    proc.terminate()
    proc.join(kill_after_s)
    if proc.is_alive():
        log.warning("worker process %s ignored SIGTERM: killing it", proc.pid)
        proc.kill()
        proc.join()


def run_in_process(
    fn: Callable[..., Any],
    *args: Any,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
    title: str = "",
    timeout_s: Optional[float] = None,
    poll_s: float = 0.05,
    kill_after_s: float = 1.0,
    **kwargs: Any,
) -> Any:
    """Call ``fn(*args, progress=, cancelled=, **kwargs)`` in a spawned process and return its result.

    Parameters
    ----------
    fn : callable
        A module-level (picklable) function following the step convention.
    *args, **kwargs
        Its arguments; they must pickle (numpy arrays, dataclasses, pyvista
        meshes do). In the child, ``cancelled()`` is always False: cancelling
        terminates the child instead.
    progress, cancelled : callables, optional
        The caller's progress sink and cancel flag, polled every ``poll_s`` s.
    title : str
        Names the step in errors and logs ("tissue solve").
    timeout_s : float, optional
        Wall-time limit, s; the child is stopped and ``SolverError`` raised.
    poll_s, kill_after_s : float
        Cancel-check period, s; grace after SIGTERM before SIGKILL, s.

    Returns
    -------
    object
        What ``fn`` returned (unpickled in the caller).

    Raises
    ------
    concurrent.futures.CancelledError
        ``cancelled()`` turned true; the child was stopped.
    SolverError
        The child died without an answer (crash, signal) or timed out.
    Exception
        Whatever ``fn`` raised, re-raised with the child's traceback as a note.
    """
    progress = progress or no_progress
    cancelled = cancelled or _never_cancelled
    name = title or getattr(fn, "__name__", "step")
    ctx = _context()
    with tempfile.TemporaryDirectory(prefix="twinplan_worker_") as tmp:
        call_path, result_path = Path(tmp) / "call.pkl", Path(tmp) / "result.pkl"
        with open(call_path, "wb") as f:
            pickle.dump((fn, args, kwargs), f, protocol=_PICKLE)
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child_main, args=(str(call_path), str(result_path), writer),
                           name=f"twinplan-{name}", daemon=True)
        t0 = time.perf_counter()
        proc.start()
        writer.close()  # the child holds the only writer: EOF when it dies
        log.info("%s: worker process %s started", name, proc.pid)
        try:
            message = _wait(proc, reader, progress, cancelled, name, t0, timeout_s, poll_s, kill_after_s)
        finally:
            _stop(proc, kill_after_s)
            reader.close()
        if message[0] == "error":
            payload, type_name, text, trace = message[1:]
            exc = pickle.loads(payload) if payload is not None else SolverError(
                f"{name}: {type_name}: {text} (in the worker process)")
            exc.add_note(f"worker process traceback:\n{trace}")
            raise exc
        with open(result_path, "rb") as f:
            result = pickle.load(f)
        log.info("%s: worker process done in %.2f s", name, time.perf_counter() - t0)
        return result


def _wait(proc, reader, progress: ProgressFn, cancelled: CancelledFn, name: str, t0: float,
          timeout_s: Optional[float], poll_s: float, kill_after_s: float) -> tuple:
    """Pass progress on until the child answers ("done"/"error"), dies, is cancelled or times out."""
    while True:
        if cancelled():
            log.info("%s: cancelled; stopping worker process %s", name, proc.pid)
            _stop(proc, kill_after_s)
            raise CancelledError(f"{name} cancelled")
        if timeout_s is not None and time.perf_counter() - t0 > timeout_s:
            _stop(proc, kill_after_s)
            raise SolverError(f"{name}: no answer within {timeout_s:g} s; worker process stopped")
        if not reader.poll(poll_s):
            continue
        try:
            message = reader.recv()
        except (EOFError, OSError):
            proc.join(5.0)
            raise SolverError(f"{name}: the worker process died ({describe_exit(proc.exitcode)}); "
                              "the application and the case are unaffected") from None
        if message[0] == "progress":
            progress(message[1], message[2])
        else:
            return message

