"""Autosave and crash recovery of the open case (no Qt).

Each running app owns a *session* folder under ``<data dir>/recovery/``::

    recovery/<session id>/session.lock   flock held while the app runs
    recovery/<session id>/session.json   the index entry (written atomically)
    recovery/<session id>/autosave.twin  the last autosaved case (app.project)

An autosave writes the case with :func:`app.project.save_case` (temporary
folder + rename, so a crash mid-save leaves the previous autosave intact) and
then replaces ``session.json`` atomically. A clean exit deletes the session
folder. On the next start, a session folder whose lock is free (its process is
gone) and which holds an autosave is a crash to offer for recovery.
"""
from __future__ import annotations

import copy
import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from app.case import Case
from app.logsetup import user_data_dir
from app.project import load_case, save_case
from imaging.errors import InputError

log = logging.getLogger(__name__)

SESSION_FILE = "session.json"
LOCK_FILE = "session.lock"
AUTOSAVE_NAME = "autosave.twin"
#: Minutes between timed autosaves unless the user's settings say otherwise.
DEFAULT_INTERVAL_MIN = 3.0


def recovery_dir() -> Path:
    """``<data dir>/recovery`` (see :func:`app.logsetup.user_data_dir`)."""
    return user_data_dir() / "recovery"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def snapshot_for_save(case: Case) -> Case:
    """A copy of ``case`` that a background save can read while the GUI edits on.

    Items are replaced, not mutated, by pipeline steps; label arrays are
    copied because brushes edit them in place.
    """
    snap = Case(case.name)
    snap.volumes = dict(case.volumes)
    snap.labels = {}
    for name, lab in case.labels.items():
        dup = copy.copy(lab)
        dup.array = lab.array.copy()
        snap.labels[name] = dup
    snap.surfaces = {name: surf.copy(deep=False) for name, surf in case.surfaces.items()}
    snap.provenance = dict(case.provenance)
    snap.landmarks = dict(case.landmarks)
    return snap


def save_case_checked(case: Case, path: str | os.PathLike) -> Path:
    """:func:`app.project.save_case` whose every failure is an ``InputError`` with the cause.

    SimpleITK reports a full disk as a ``RuntimeError`` from its NRRD writer
    (``expected to write N bytes, but only wrote M``): that becomes "No space
    left on device". ``save_case`` has already removed its temporary folder and
    the previous project is untouched.

    Raises
    ------
    InputError
        Naming the project folder and the reason; the case stays in memory.
    """
    target = Path(path)
    try:
        return save_case(case, target)
    except InputError as exc:
        if "still open" in str(exc):
            raise
        raise InputError(f"{exc}; the case is still open") from exc
    except RuntimeError as exc:
        text = str(exc)
        full = "expected to write" in text or "No space left" in text or _free_bytes(target.parent) < 1 << 20
        reason = os.strerror(errno.ENOSPC) if full else text.strip().splitlines()[-1][:200]
        raise InputError(f"{target}: saving failed ({reason}); the case is still open") from exc


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 1 << 40


def repair_project(path: str | os.PathLike) -> list[str]:
    """Undo what a crash in the middle of :func:`app.project.save_case` left behind.

    A save writes ``.NAME.twin.*.tmp`` beside the project, then renames the old
    project to ``.NAME.twin.old`` and the temporary folder into place. Killed in
    between, the project could be missing while its last complete state sits in
    ``.old``: that is moved back. Stale temporary folders are deleted.

    Parameters
    ----------
    path : path-like
        The project folder ``NAME.twin`` (it may be missing).

    Returns
    -------
    list of str
        What was repaired, one line each (empty if nothing).
    """
    target = Path(path)
    actions: list[str] = []
    backup = target.with_name(f".{target.name}.old")
    if not target.exists() and (backup / "case.json").is_file():
        os.rename(backup, target)
        actions.append(f"restored {target.name} from its last complete save")
    elif backup.exists() and target.exists():
        shutil.rmtree(backup, ignore_errors=True)
        actions.append(f"removed {backup.name}")
    if target.parent.is_dir():
        for tmp in target.parent.glob(f".{target.name}.*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
            actions.append(f"removed unfinished save {tmp.name}")
    for line in actions:
        log.info("repair: %s", line)
    return actions


@dataclass
class RecoveryEntry:
    """One crashed session found on start-up."""

    folder: Path
    info: dict

    @property
    def autosave(self) -> Path:
        return self.folder / AUTOSAVE_NAME

    @property
    def saved_at(self) -> str:
        return str(self.info.get("saved_at", ""))

    def describe(self) -> str:
        """One line for the recovery dialog (no patient data: case name and times only)."""
        where = self.info.get("project_path") or self.info.get("source_path") or "an unsaved case"
        step = self.info.get("last_step") or "timed autosave"
        return f"{self.info.get('case_name', 'case')} ({Path(where).name}), autosaved {self.saved_at} after {step}"

    def load(self) -> Case:
        """The autosaved case."""
        return load_case(self.autosave)


def _lock_is_free(folder: Path) -> bool:
    lock = folder / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # its process still runs
    finally:
        os.close(fd)
    return True


def find_crashed_sessions(root: Optional[Path] = None) -> list[RecoveryEntry]:
    """Sessions left by processes that died with an autosave, newest first.

    Abandoned sessions without any autosave are deleted on the way.

    Parameters
    ----------
    root : Path, optional
        Recovery folder (default :func:`recovery_dir`).
    """
    root = Path(root) if root is not None else recovery_dir()
    entries: list[RecoveryEntry] = []
    if not root.is_dir():
        return entries
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not _lock_is_free(folder):
            continue
        info_path = folder / SESSION_FILE
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
        if info.get("saved_at") and (folder / AUTOSAVE_NAME / "case.json").is_file():
            entries.append(RecoveryEntry(folder, info))
        else:
            shutil.rmtree(folder, ignore_errors=True)
    entries.sort(key=lambda e: e.saved_at, reverse=True)
    return entries


def discard_session(entry: RecoveryEntry) -> None:
    """Delete a crashed session's recovery data (after it was restored or declined)."""
    shutil.rmtree(entry.folder, ignore_errors=True)


class AutosaveSession:
    """The recovery folder of this process; saves run on a background thread.

    Parameters
    ----------
    root : Path, optional
        Recovery folder (default :func:`recovery_dir`).
    """

    def __init__(self, root: Optional[Path] = None) -> None:
        self.root = Path(root) if root is not None else recovery_dir()
        find_crashed_sessions(self.root)  # drops folders of dead sessions that never autosaved
        self.session_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.folder = self.root / self.session_id
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.info: dict = {"session": self.session_id, "pid": os.getpid(), "started": _now(), "n_saves": 0}
        write_json_atomic(self.folder / SESSION_FILE, self.info)
        self._thread: Optional[threading.Thread] = None
        self._mutex = threading.Lock()
        self.last_error: Optional[str] = None
        self.closed = False

    @property
    def autosave_path(self) -> Path:
        return self.folder / AUTOSAVE_NAME

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def save_now(self, case: Case, *, source_path: Optional[Path] = None, project_path: Optional[Path] = None,
                 last_step: str = "") -> Path:
        """Autosave ``case`` on the calling thread; returns the autosave folder.

        Raises
        ------
        InputError
            If the recovery folder cannot be written (disk full, read-only).
        """
        with self._mutex:
            if self.closed:
                raise InputError(f"{self.folder}: autosave session is closed")
            t0 = time.perf_counter()
            out = save_case_checked(case, self.autosave_path)
            info = dict(self.info, saved_at=_now(), case_name=case.name, last_step=last_step,
                        source_path=str(source_path) if source_path else "",
                        project_path=str(project_path) if project_path else "",
                        n_saves=int(self.info.get("n_saves", 0)) + 1,
                        seconds=round(time.perf_counter() - t0, 3))
            write_json_atomic(self.folder / SESSION_FILE, info)
            self.info = info
            log.info("autosaved case after %s in %.2f s", last_step or "timer", info["seconds"])
            return out

    def save_in_background(self, case: Case, *, on_done: Optional[Callable[[Optional[str]], None]] = None,
                           **meta) -> bool:
        """Snapshot ``case`` now and save it on a thread; False if a save is still running.

        ``on_done(error)`` is called on the worker thread with None or an error message.
        """
        if self.busy or self.closed:
            return False
        snap = snapshot_for_save(case)

        def run() -> None:
            error = None
            try:
                self.save_now(snap, **meta)
            except (InputError, OSError) as exc:
                error = str(exc)
                log.warning("autosave failed: %s", exc)
            self.last_error = error
            if on_done is not None:
                on_done(error)

        self._thread = threading.Thread(target=run, name="autosave", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: Optional[float] = None) -> None:
        """Wait for a background save to finish."""
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Clean exit: wait for a running save, then delete the session folder."""
        self.wait(60)
        with self._mutex:
            self.closed = True
            shutil.rmtree(self.folder, ignore_errors=True)
            try:
                os.close(self._lock_fd)
            except OSError:
                pass
