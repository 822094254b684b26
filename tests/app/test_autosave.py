"""Never lose work: autosave, crash recovery, kills in the middle of a save, full and read-only disks.

The kill tests run a headless driver in a subprocess on the real Philips CT,
SIGKILL it at a known point inside ``save_case`` and check what is on disk.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.autosave import (AutosaveSession, discard_session, find_crashed_sessions, repair_project, save_case_checked,
                          snapshot_for_save)
from app.pipeline import apply_result, import_scan, step_segment
from app.project import load_case, save_case
from imaging.errors import InputError
from tests.conftest import ROOT, data_path

BONE_HU = (300.0, 3000.0)
SOFT_HU = (-200.0, 200.0)


@pytest.fixture(scope="module")
def philips_case():
    case = import_scan(data_path("dcm_qa_ct_philips"))
    apply_result(case, step_segment(case, label="bone", hu_range=BONE_HU))
    return case


# -- the driver (runs in a subprocess) ---------------------------------------
def drive_kill_in_save(project: str, recovery: str, stop_at: str) -> None:
    """Import + segment + save (state A), segment more + autosave (state B), then save B and
    stop inside that save at ``stop_at`` ("write": after the first data file, "rename": after
    the old project was moved aside), announce it on stdout and wait to be killed."""
    import app.project as proj

    case = import_scan(data_path("dcm_qa_ct_philips"))
    apply_result(case, step_segment(case, label="bone", hu_range=BONE_HU))
    save_case(case, project)
    session = AutosaveSession(Path(recovery))
    apply_result(case, step_segment(case, label="soft", hu_range=SOFT_HU))
    session.save_now(case, project_path=Path(project), last_step="Segment soft")
    print("AUTOSAVED", json.dumps({"soft": int(case.labels["soft"].array.sum())}), flush=True)

    def hang(message: str) -> None:
        print(message, flush=True)
        time.sleep(120)

    if stop_at == "write":
        real_write = proj._write_image

        def write(*args, **kwargs):
            real_write(*args, **kwargs)
            hang("MIDSAVE")
        proj._write_image = write
    else:
        real_rename = proj.os.rename

        def rename(src, dst):
            real_rename(src, dst)
            if str(dst).endswith(".old"):
                hang("MIDSAVE")
        proj.os.rename = rename
    save_case(case, project)
    print("NOT KILLED", flush=True)


def run_until(args: list[str], marker: str, timeout: float = 120.0, env=None) -> subprocess.Popen:
    """Start ``args``; return once a stdout line starts with ``marker`` (the process still runs)."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + timeout
    proc.lines = []
    for line in proc.stdout:
        proc.lines.append(line.strip())
        if line.startswith(marker):
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"no {marker!r} from the driver: {proc.lines} {proc.stderr.read()[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", ["write", "rename"])
def test_sigkill_in_the_middle_of_a_save_keeps_last_complete_state(tmp_path, philips_case, stop_at):
    project, recovery = tmp_path / "head.twin", tmp_path / "recovery"
    code = (f"from tests.app.test_autosave import drive_kill_in_save; "
            f"drive_kill_in_save({str(project)!r}, {str(recovery)!r}, {stop_at!r})")
    proc = run_until([sys.executable, "-c", code], "MIDSAVE")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    soft_voxels = json.loads(next(x for x in proc.lines if x.startswith("AUTOSAVED")).split(" ", 1)[1])["soft"]

    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".head.twin"))
    assert leftovers, "the kill should have left an unfinished save behind"
    repairs = repair_project(project)
    assert repairs and not any(p.name.startswith(".head.twin") for p in tmp_path.iterdir())
    on_disk = load_case(project)  # the last complete state: A (bone only), hashes verified by load_case
    assert sorted(on_disk.labels) == ["bone"]
    assert np.array_equal(on_disk.labels["bone"].array, philips_case.labels["bone"].array)

    entries = find_crashed_sessions(recovery)
    assert len(entries) == 1 and entries[0].info["last_step"] == "Segment soft"
    restored = entries[0].load()  # state B, from the autosave
    assert sorted(restored.labels) == ["bone", "soft"]
    assert int(restored.labels["soft"].array.sum()) == soft_voxels > 0
    discard_session(entries[0])
    assert find_crashed_sessions(recovery) == []


def test_live_session_is_not_offered_and_clean_exit_leaves_nothing(tmp_path, philips_case):
    session = AutosaveSession(tmp_path)
    session.save_now(philips_case, last_step="Segment bone")
    assert session.info["n_saves"] == 1 and session.info["seconds"] > 0
    assert find_crashed_sessions(tmp_path) == []  # its lock is held: this process still runs
    assert session.save_in_background(philips_case, last_step="timer")
    session.wait(60)
    assert session.last_error is None and session.info["n_saves"] == 2
    back = load_case(session.autosave_path)
    assert np.array_equal(back.volumes["ct"].array, philips_case.volumes["ct"].array)
    session.close()
    assert list(tmp_path.iterdir()) == []


def test_snapshot_is_isolated_from_in_place_edits(philips_case):
    snap = snapshot_for_save(philips_case)
    before = int(snap.labels["bone"].array.sum())
    philips_case.labels["bone"].array[0, 0, 0] ^= 1
    try:
        assert int(snap.labels["bone"].array.sum()) == before
    finally:
        philips_case.labels["bone"].array[0, 0, 0] ^= 1


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str = "256k", read_only: bool = False):
    """A small tmpfs at ``path`` (root only); yields False when mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    ok = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                                              capture_output=True).returncode == 0
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], check=False)


def _fail_writes(monkeypatch, err: int) -> None:
    import app.project as proj

    def boom(*_a, **_k):
        raise OSError(err, os.strerror(err))
    monkeypatch.setattr(proj, "_write_image", boom)


def test_disk_full_gives_a_clear_error_and_keeps_the_old_project(tmp_path, philips_case, monkeypatch):
    disk = tmp_path / "disk"
    with tiny_filesystem(disk, size="256k") as mounted:
        if not mounted:
            disk.mkdir(exist_ok=True)
            _fail_writes(monkeypatch, errno.ENOSPC)
        with pytest.raises(InputError, match="No space left on device") as info:
            save_case_checked(philips_case, disk / "head")
        assert "still open" in str(info.value)
        assert not any(disk.iterdir()), "a failed save must not leave partial folders"
        free = AutosaveSession(tmp_path / "recovery")
        monkeypatch.setattr(free, "folder", disk / "session")  # recovery folder on the full disk
        with pytest.raises(InputError, match="No space left on device"):
            free.save_now(philips_case)
        free.close()


def test_read_only_folder_gives_a_clear_error(tmp_path, philips_case, monkeypatch):
    folder = tmp_path / "ro"
    with tiny_filesystem(folder, read_only=True) as mounted:
        if not mounted:
            folder.mkdir(exist_ok=True)
            import app.project as proj

            def refuse(*_a, **_k):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            monkeypatch.setattr(proj.tempfile, "mkdtemp", refuse)
        with pytest.raises(InputError, match="Read-only file system") as info:
            save_case_checked(philips_case, folder / "head")
        assert str(folder) in str(info.value)


def test_repair_is_a_no_op_on_a_healthy_project(tmp_path, philips_case):
    out = save_case(philips_case, tmp_path / "ok")
    assert repair_project(out) == []
    assert repair_project(tmp_path / "missing.twin") == []


def test_downsampled_load_matches_block_means_and_keeps_positions(philips_case):
    """Factor 2 on the real Philips CT: every 2nd slice, 2 x 2 block means, same physical place."""
    from app.memory_guard import check_memory, load_series_downsampled
    from imaging.dicom import scan_dicom_folder

    series = scan_dicom_folder(data_path("dcm_qa_ct_philips")).find(None)
    verdict = check_memory(series, available_bytes=40 * 2**20)
    assert verdict.factor == 2 and not verdict.fits and "downsampled by 2" in verdict.message()
    assert check_memory(series, available_bytes=2**34).fits
    small = load_series_downsampled(series, 2)
    full = philips_case.volumes["ct"]
    assert small.dims_xyz == (256, 256, 14)
    kept = full.array[::2].astype(np.float64)
    expected = kept.reshape(14, 256, 2, 256, 2).mean(axis=(2, 4))
    assert np.abs(small.array - expected).max() <= 0.5  # rounding to the int16 grid only
    corner = full.geometry.index_to_lps() @ np.array([[0, 0, 0, 1], [1, 1, 0, 1]], float).T
    assert np.allclose(small.geometry.index_to_lps() @ np.array([0, 0, 0, 1.0]), corner.mean(axis=1), atol=1e-6)
    assert np.allclose(small.geometry.spacing_xyz, np.array(full.geometry.spacing_xyz) * 2, rtol=1e-6)
    with pytest.raises(InputError, match="downsample factor"):
        load_series_downsampled(series, 0)
