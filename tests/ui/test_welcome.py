"""The first five minutes: welcome screen, tooltips and shortcuts, settings, About, high-DPI."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QKeySequence

from app.ui.menus import about_html, menu_shortcuts, shortcuts_html
from tests.conftest import ROOT
from tests.ui.conftest import load, wait_idle

pytestmark = [pytest.mark.gui]


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TWINPLAN_DATA_DIR", str(tmp_path / "data"))


def _menu_actions(window):
    found = []

    def walk(menu, path):
        for act in menu.actions():
            if act.menu() is not None:
                walk(act.menu(), f"{path} > {act.text()}")
            elif not act.isSeparator():
                found.append((f"{path} > {act.text()}", act))
    for top in window.menuBar().actions():
        if top.menu() is not None:
            walk(top.menu(), top.text())
    return found


def test_welcome_screen_opens_demo_and_recent(qtbot, window, philips_series, screenshots, demo_case_path):
    welcome = window.welcome
    assert welcome.showing and welcome.page.isVisible() and not window.views.views["axial"].isVisible()
    assert welcome.page.buttons["demo"].isEnabled() and welcome.page.recent.count() == 0
    assert welcome.page.empty_hint.isVisible()
    window.save_screenshot(screenshots / "welcome_first_start.png")

    welcome.page.buttons["demo"].click()  # the demo case, one click
    wait_idle(qtbot, window)
    assert window.case is not None and window.source_path == demo_case_path, window.errors
    assert not welcome.showing and window.views.views["axial"].isVisible()
    assert window.case.volumes["ct"].dims_xyz[2] > 100

    load(qtbot, window, philips_series)
    window.set_case(None)  # closing the case brings the welcome screen back, with both recents
    assert welcome.showing
    recent = [welcome.page.recent.item(i).data(256) for i in range(welcome.page.recent.count())]
    assert recent == [str(philips_series), str(demo_case_path)]
    item = welcome.page.recent.item(0)
    welcome.page.recent.itemActivated.emit(item)  # Enter / double-click opens it
    wait_idle(qtbot, window)
    assert window.source_path == philips_series and window.case.volumes["ct"].dims_xyz == (512, 512, 28)


def test_every_menu_command_has_a_tooltip_and_its_shortcut_is_in_help(window):
    actions = _menu_actions(window)
    assert len(actions) > 30
    missing = [name for name, act in actions if not act.toolTip().strip()]
    assert missing == []
    core = {"open_dicom", "save", "save_as", "export_mesh", "screenshot", "quit", "volume_rendering", "about",
            "shortcuts", "plan_panel", "plan_prepare", "undo", "redo", "layout_axial"}
    vague = [k for k in core if window.actions_by_name[k].toolTip().replace("&", "") ==
             window.actions_by_name[k].text().replace("&", "")]
    assert vague == [], "core commands need a describing tooltip, not just their name"
    assert "(Ctrl+S)" in window.actions_by_name["save"].toolTip()

    help_text = shortcuts_html(window)
    with_keys = [(name, act) for name, act in actions if not act.shortcut().isEmpty()]
    assert len(with_keys) >= 15
    for name, act in with_keys:
        assert act.shortcut().toString(QKeySequence.NativeText) in help_text, name
    listed = dict((v, k) for k, v in menu_shortcuts(window))
    assert listed["File > Save project"] == "Ctrl+S" and listed["Edit > Preferences"] == "Ctrl+,"


def test_about_names_vtk_dolfinx_and_qt_versions():
    import vtk
    from PySide6.QtCore import qVersion

    html = about_html()
    assert f"VTK</td><td>&nbsp;&nbsp;{vtk.vtkVersion.GetVTKVersion()}" in html
    assert f"Qt</td><td>&nbsp;&nbsp;{qVersion()}" in html
    dolfinx = pytest.importorskip("dolfinx")
    assert f"dolfinx</td><td>&nbsp;&nbsp;{dolfinx.__version__}" in html


def test_settings_persist_across_windows(qtbot, qapp, tmp_path):
    from app.ui.main_window import MainWindow
    from app.ui.settings_dialog import SettingsDialog

    ini = str(tmp_path / "prefs.ini")
    first = MainWindow(QSettings(ini, QSettings.IniFormat))
    dialog = SettingsDialog(first)
    dialog.interval.setValue(7.5)
    dialog.autosave.setChecked(True)
    dialog.window_level.setCurrentText("Bone (W2000 L400)")
    dialog.accept()
    assert first.autosave.timer.interval() == 450_000
    first.close()

    second = MainWindow(QSettings(ini, QSettings.IniFormat))  # a new start reads them back
    try:
        assert second.autosave.interval_min() == 7.5 and second.autosave.timer.isActive()
        assert second.autosave.timer.interval() == 450_000
        assert second.wl_combo.currentText() == "Bone (W2000 L400)"
        reopened = SettingsDialog(second)
        assert reopened.interval.value() == 7.5 and reopened.window_level.currentText() == "Bone (W2000 L400)"
        reopened.autosave.setChecked(False)
        reopened.accept()
        assert not second.autosave.timer.isActive()
    finally:
        second.close()


def test_after_step_autosave_runs_in_the_background(qtbot, window, philips_series):
    load(qtbot, window, philips_series)
    assert not window.autosave.needs_autosave()  # a fresh import is not worth an autosave
    assert window.segment("bone", 300, 3000)
    wait_idle(qtbot, window)
    session = window.autosave.session
    qtbot.waitUntil(lambda: session.info.get("n_saves", 0) == 1 and not session.busy, timeout=60_000)
    assert session.info["last_step"] == "Segmenting bone"
    assert window.autosave.label.text().startswith("Autosaved")
    assert not window.autosave.needs_autosave()


HIDPI_PROBE = """
import sys
from PySide6.QtWidgets import QApplication
from PySide6.QtGui import QGuiApplication
from PySide6.QtCore import Qt
QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
app = QApplication([])
from app.ui.main_window import MainWindow
w = MainWindow()
w.resize(1200, 800)
w.show()
w.set_layout("3d")
for _ in range(20):
    app.processEvents()
widget = w.scene.plotter.interactor
w.scene.plotter.render()
rw = w.scene.plotter.render_window
print(widget.devicePixelRatioF(), widget.width(), widget.height(), *rw.GetSize())
w.close()
"""


def test_high_dpi_renders_vtk_at_device_pixels(tmp_path):
    """At 150 % scaling the 3D view's render window has 1.5x the widget's logical pixels."""
    env = dict(os.environ, QT_SCALE_FACTOR="1.5", TWINPLAN_DATA_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", HIDPI_PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    ratio, w, h, rw, rh = (float(v) for v in out.stdout.split()[-5:])
    assert ratio == pytest.approx(1.5)
    assert rw == pytest.approx(w * ratio, abs=2) and rh == pytest.approx(h * ratio, abs=2)


def test_maximised_view_fills_the_view_area(qtbot, window):
    area = window.welcome.views_widget
    for mode, widget in (("3d", window.scene), ("sagittal", window.views.views["sagittal"])):
        window.set_layout(mode)
        qtbot.wait(50)
        assert widget.width() > 0.95 * area.width() and widget.height() > 0.95 * area.height(), mode
    window.set_layout("four-up")
    qtbot.wait(50)
    assert window.scene.width() < 0.55 * area.width()
