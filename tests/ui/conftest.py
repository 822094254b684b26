"""Fixtures for GUI tests: a real MainWindow (Qt + VTK) under Xvfb, real data."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from imaging.dicom import scan_dicom_folder
from imaging.phantom import SpherePhantom, write_ct_series
from tests.conftest import data_path

SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
TASK_TIMEOUT_MS = 60_000


@pytest.fixture(scope="session")
def philips_series() -> Path:
    """28-slice 512 x 512 head phantom CT (DICOM folder)."""
    return data_path("dcm_qa_ct_philips")


@pytest.fixture(scope="session")
def large_series(tmp_path_factory) -> Path:
    """A synthetic 160-slice DICOM series, big enough to cancel its import midway."""
    phantom = SpherePhantom(shape_zyx=(160, 192, 192))
    folder = tmp_path_factory.mktemp("large_series")
    write_ct_series(phantom.volume_array(), folder, spacing_xyz=phantom.spacing_xyz,
                    origin_xyz=phantom.origin_xyz)
    return folder


@pytest.fixture(scope="session")
def two_series(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """One folder holding two small synthetic CT series; returns it and {uid: slices}."""
    folder = tmp_path_factory.mktemp("two_series")
    for n, slices in enumerate((12, 20)):
        phantom = SpherePhantom(shape_zyx=(slices, 64, 64), center_xyz=(0.0, 0.0, 110.0), radius_mm=6.0)
        write_ct_series(phantom.volume_array(), folder, spacing_xyz=phantom.spacing_xyz,
                        origin_xyz=phantom.origin_xyz, seed=n)
    scan = scan_dicom_folder(folder)
    return folder, {s.series_uid: len(s.slices) for s in scan.series}


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def window(qapp, qtbot, tmp_path):
    """A shown MainWindow with private settings; errors are collected in ``window.errors``."""
    from app.ui.main_window import MainWindow
    from app.ui.theme import apply_dark_theme

    apply_dark_theme(qapp)  # as ``twinplan-gui`` does, so screenshots show the real look

    settings = QSettings(str(tmp_path / "twinplan.ini"), QSettings.IniFormat)
    win = MainWindow(settings)
    win.errors = []
    win.show_error = win.errors.append  # the message box would need a click
    win.confirm_discard = lambda: True
    win.resize(1500, 950)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


def wait_idle(qtbot, win) -> None:
    """Wait until the window's worker task (if any) has finished and been applied."""
    qtbot.waitUntil(lambda: not win.runner.busy, timeout=TASK_TIMEOUT_MS)


def load(qtbot, win, path) -> None:
    """Open ``path`` through the worker and wait for the case to appear."""
    assert win.open_path(path)
    wait_idle(qtbot, win)
    assert win.case is not None, f"loading failed: {win.errors}"
