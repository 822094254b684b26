"""Never lose work in the GUI: SIGKILL mid-solve then recovery, full/read-only disks, big scans, close prompt,
and no patient identifiers in the log file."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from app.autosave import find_crashed_sessions
from tests.app.test_autosave import run_until, tiny_filesystem
from tests.conftest import DEMO_CASE, data_path
from tests.ui.conftest import load, wait_idle

pytestmark = [pytest.mark.gui]


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    """Recovery folders and logs of these tests live in a temporary data folder."""
    folder = tmp_path / "data"
    monkeypatch.setenv("TWINPLAN_DATA_DIR", str(folder))
    return folder


def maxilla_step(case):
    """A Le Fort I-like segment of the Cranium bone: anterior bone below z = 20 mm (LPS)."""
    from app.case import Provenance
    from app.pipeline import StepResult
    from imaging.volume import LabelInfo, LabelMap

    bone = case.labels["bone"]
    g = bone.geometry
    z = g.origin_xyz[2] + np.arange(bone.array.shape[0]) * g.spacing_xyz[2]
    y = g.origin_xyz[1] + np.arange(bone.array.shape[1]) * g.spacing_xyz[1]
    maxilla = (bone.array > 0) & (z[:, None, None] < 20.0) & (y[None, :, None] < -150.0)
    label = LabelMap(maxilla.astype(np.uint8), g, {1: LabelInfo("maxilla", (0.95, 0.8, 0.3))})
    return StepResult("label", "maxilla", label, Provenance("guide_maxilla", {"z_below_mm": 20.0}))


# -- driver: the real GUI in a subprocess, killed while the soft-tissue solve runs ---------
def drive_gui_until_solving(ini: str) -> None:
    """Open the demo CT, segment bone, cut a maxilla (autosaved), start the FE preparation and
    print PROGRESS lines while it runs; the test kills this process."""
    from app.ui.main_window import MainWindow
    from imaging.segment import HU_PRESETS
    from app.ui.commands import ApplyStepCommand

    app = QApplication.instance() or QApplication([])
    settings = QSettings(ini, QSettings.IniFormat)
    settings.setValue("autosave/interval_min", 0.05)  # 3 s: the timer catches the maxilla edit
    win = MainWindow(settings)
    win.confirm_discard = lambda: True
    win.show_error = lambda message: print("ERROR", message, flush=True)
    win.show()

    def wait(condition, timeout=300.0):
        end = time.monotonic() + timeout
        while not condition():
            app.processEvents()
            time.sleep(0.02)
            if time.monotonic() > end:
                raise TimeoutError
    assert win.open_path(DEMO_CASE)
    wait(lambda: win.case is not None and not win.runner.busy)
    assert win.segment("bone", *HU_PRESETS["bone"])
    wait(lambda: "bone" in win.case.labels and not win.runner.busy)
    win.undo_stack.push(ApplyStepCommand(win.case, maxilla_step(win.case), "Segment maxilla"))
    wait(lambda: not win.autosave.needs_autosave() and not win.autosave.session.busy)
    counts = {n: int(np.count_nonzero(lab.array)) for n, lab in win.case.labels.items()}
    print("AUTOSAVED", json.dumps(counts), flush=True)
    win.runner.progress.connect(lambda f, m: print(f"PROGRESS {f:.3f} {m}", flush=True))
    win.plan_panel.segment.setCurrentText("maxilla")
    win.plan_panel.element_mm.setValue(10.0)  # coarse: the test is about the kill, not the answer
    assert win.prepare_live_plan()
    wait(lambda: False, timeout=600)


@pytest.mark.slow
@pytest.mark.fem
def test_sigkill_during_solve_then_recover(qtbot, qapp, tmp_path, data_dir, screenshots):
    env = dict(os.environ, TWINPLAN_DATA_DIR=str(data_dir))
    code = f"from tests.ui.test_recovery import drive_gui_until_solving; drive_gui_until_solving({str(tmp_path / 'd.ini')!r})"
    proc = run_until([sys.executable, "-c", code], "AUTOSAVED", timeout=240, env=env)
    counts = json.loads(proc.lines[-1].split(" ", 1)[1])
    solving = None
    for line in proc.stdout:  # wait until the FE preparation is under way, then kill
        if line.startswith("PROGRESS") and "Unit response" in line:  # the FE solves have started
            solving = line.strip()
            break
    t_kill = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert solving is not None and proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]

    entries = find_crashed_sessions(data_dir / "recovery")
    assert len(entries) == 1
    from app.ui.main_window import MainWindow

    win = MainWindow(QSettings(str(tmp_path / "gui.ini"), QSettings.IniFormat))
    win.errors = []
    win.show_error = win.errors.append
    win.confirm_discard = lambda: True
    offered = []
    win.ask_recovery = lambda found: offered.append(found) or found[0]
    win.show()
    qtbot.waitExposed(win)
    try:
        assert win.autosave.offer_recovery() is not None
        wait_idle(qtbot, win)
        assert len(offered[0]) == 1 and win.case is not None, win.errors
        restored = {n: int(np.count_nonzero(lab.array)) for n, lab in win.case.labels.items()}
        assert restored == counts  # bone + maxilla, exactly as autosaved; no half-made skin
        assert win.isWindowModified() and not win.undo_stack.isClean()
        assert win.case.volumes["ct"].dims_xyz[2] > 100
        assert find_crashed_sessions(data_dir / "recovery") == []  # the recovered session is gone
        win.save_screenshot(screenshots / "recovered_after_kill.png")
    finally:
        win.close()
    print(f"killed at: {solving}; recovery checked {time.monotonic() - t_kill:.1f} s after the kill")


def test_recovery_dialog_lists_sessions(qtbot, window):
    from app.autosave import RecoveryEntry
    from app.ui.recovery import RecoveryDialog

    entries = [RecoveryEntry(Path("/x/1"), {"case_name": "Cranium", "saved_at": "2026-01-02T10:00:00+00:00",
                                            "source_path": str(DEMO_CASE), "last_step": "Segmenting bone"})]
    dialog = RecoveryDialog(entries, window)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.list.count() == 1 and "Cranium" in dialog.list.item(0).text()
    dialog.recover_button.click()
    assert dialog.choice is entries[0]


def _save_fails_cleanly(qtbot, win, target: Path, reason: str) -> None:
    before = dict(win.case.labels)
    win.errors.clear()
    assert win.save_project_as(target)
    wait_idle(qtbot, win)
    assert win.errors and reason in win.errors[-1] and "still open" in win.errors[-1], win.errors
    assert win.case is not None and dict(win.case.labels) == before  # the case stays in memory
    assert win.isWindowModified() and win.project_path != target


def test_disk_full_and_read_only_on_save(qtbot, window, philips_series, tmp_path):
    load(qtbot, window, philips_series)
    assert window.segment("bone", 300, 3000)
    wait_idle(qtbot, window)
    with tiny_filesystem(tmp_path / "full", size="256k") as mounted:
        if not mounted:
            pytest.skip("needs root to mount a small tmpfs")
        _save_fails_cleanly(qtbot, window, tmp_path / "full" / "head.twin", "No space left on device")
    with tiny_filesystem(tmp_path / "ro", read_only=True):
        _save_fails_cleanly(qtbot, window, tmp_path / "ro" / "head.twin", "Read-only file system")
    assert window.save_project_as(tmp_path / "ok" / "head.twin")  # a good place still works
    wait_idle(qtbot, window)
    assert window.project_path.is_dir() and not window.isWindowModified()


def test_big_scan_offers_a_downsampled_load(qtbot, window, philips_series, monkeypatch):
    import app.memory_guard as guard

    monkeypatch.setattr(guard, "available_memory_bytes", lambda: 40 * 2**20)  # 40 MiB free
    asked = []
    window.confirm_downsample = lambda check: asked.append(check) or True
    load(qtbot, window, philips_series)
    check = asked[0]
    assert check.factor == 2 and "downsampled by 2" in check.message()
    assert check.needed_bytes == 512 * 512 * 28 * guard.WORKING_BYTES_PER_VOXEL
    vol = window.case.volumes["ct"]
    assert vol.dims_xyz == (256, 256, 14)
    assert any("downsampled by 2" in w for w in vol.warnings)
    assert window.case.provenance["volume/ct"].params["downsample"] == 2


def test_close_with_unsaved_changes_asks(qtbot, window, philips_series):
    load(qtbot, window, philips_series)
    assert window.segment("bone", 300, 3000)
    wait_idle(qtbot, window)
    asked = []
    window.confirm_discard = lambda: asked.append(True) and False  # the user presses Cancel
    assert not window.close() and window.isVisible() and asked
    window.confirm_discard = lambda: True


def test_log_file_has_no_patient_identifiers(qtbot, window, tmp_path, data_dir):
    """A real CT re-labelled with a patient name, in a folder named after the patient (as PACS
    exports do): the rotating log file never shows the name, ID or birth date."""
    from app.logsetup import IDENTIFIERS, REDACTED, log_file_path, setup_logging

    name, pid, birth = "QUIXOTE^ALONSO", "PID-734211", "19470603"
    folder = tmp_path / "QUIXOTE_ALONSO_PID-734211"
    folder.mkdir()
    for src in sorted(data_path("dcm_qa_ct_philips").iterdir()):
        try:
            ds = pydicom.dcmread(src)
        except pydicom.errors.InvalidDicomError:  # the folder's notes
            continue
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = name, pid, birth
        ds.save_as(folder / src.name)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    IDENTIFIERS.clear()
    try:
        path = setup_logging(logging.DEBUG, console=False)
        assert path == log_file_path() and str(path).startswith(str(data_dir))
        load(qtbot, window, folder)
        logging.getLogger("app.test").warning("opened %s for %s born %s", folder, "Alonso Quixote", "1947-06-03")
        try:
            raise ValueError(f"cannot parse {folder / 'I10'}")
        except ValueError:
            logging.getLogger("app.test").exception("failure")
        for handler in root.handlers:
            handler.flush()
        text = path.read_text()
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "_twinplan", False):
                root.removeHandler(handler)
                handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        IDENTIFIERS.clear()
    assert "task started: Importing" in text and REDACTED in text
    for secret in ("QUIXOTE", "ALONSO", "Alonso", "PID-734211", "19470603", "1947-06-03"):
        assert secret.lower() not in text.lower(), secret
    shutil.rmtree(folder)
