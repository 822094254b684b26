"""Rehearsal dock on the real Cranium twin: prepare, play, pause and orbit, step, export a GIF; export a report."""
from __future__ import annotations

import time

import imageio.v3 as iio
import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.app.twin_case import cranium_twin
from tests.ui.conftest import load, wait_idle

pytest.importorskip("dolfinx", reason="Debian python3-dolfinx-real is installed by make setup")
pytestmark = [pytest.mark.gui, pytest.mark.fem, pytest.mark.slow]


@pytest.fixture(scope="session")
def twin(tmp_path_factory, demo_case_path):
    return cranium_twin(tmp_path_factory.mktemp("twin"))


def test_rehearse_and_export(qtbot, window, twin, tmp_path, screenshots):
    load(qtbot, window, twin)
    panel = window.rehearsal_panel
    window.actions_by_name["rehearsal_panel"].trigger()
    assert window.rehearsal_dock.isVisible()
    assert [panel.scenario.itemText(i) for i in range(panel.scenario.count())] == [
        "advance5", "advance3_tilt", "stenosis60"]
    assert not panel.play_button.isEnabled() and not panel.export_button.isEnabled()
    panel.scenario.setCurrentText("advance3_tilt")
    panel.fps.setValue(3)  # 3 frames per still step, 6 for the move: 15 frames
    qtbot.mouseClick(panel.prepare_button, Qt.LeftButton)
    wait_idle(qtbot, window)
    assert panel.rehearsal is not None, window.errors
    assert panel.steps.count() == 4 and panel.steps.item(2).text().startswith("3. Move")
    plotter = window.scene.plotter
    shown = {n for n, a in plotter.renderer.actors.items() if hasattr(a, "GetVisibility") and a.GetVisibility()}
    assert {"rehearsal_bone", "rehearsal_segment", "rehearsal_skin"} <= shown
    assert not any(window.scene.surface_actors[n].GetVisibility() for n in window.scene.surface_actors)

    # Play to the end: the frame advances on the timer and stops at the last frame.
    qtbot.mouseClick(panel.play_button, Qt.LeftButton)
    assert panel.playing and panel.play_button.text() == "Pause"
    qtbot.waitUntil(lambda: not panel.playing, timeout=60_000)
    assert panel.frame == len(panel._plan) - 1 == 14 and panel.steps.currentRow() == 3
    assert panel.frames_shown >= 1
    skin = plotter.renderer.actors["rehearsal_skin"]
    assert skin.GetMapper().GetScalarVisibility()  # coloured by displacement in the result step
    assert "displacement norm mm 0.00-" in panel.frame_label.text()  # the colour range, stated in text
    # Real time: on schedule the next frame is shown; late ticks skip to the frame due (never past the end).
    panel.show_frame(0)
    panel._clock = (time.perf_counter(), 0)
    panel.timer.start(10_000)
    panel._tick()
    assert panel.frame == 1 and panel.playing
    panel._clock = (time.perf_counter() - 2.0, 1)  # 2 s late at 3 fps: six frames due
    panel._tick()
    assert panel.frame == 8 and panel._plan[8] == (2, 0.4)  # move frames 6..11 run t = 0, 0.2, ... 1
    panel.timer.stop()
    panel.show_frame(14)

    # Step back twice: paused at the start of the move, segment at its original place.
    qtbot.mouseClick(panel.back_button, Qt.LeftButton)
    qtbot.mouseClick(panel.back_button, Qt.LeftButton)
    assert panel._plan[panel.frame] == (2, 0.0) and panel.steps.currentRow() == 2
    seg_start = np.array(plotter.renderer.actors["rehearsal_segment"].GetMapper().GetInput().GetPoints().GetData())
    qtbot.mouseClick(panel.forward_button, Qt.LeftButton)  # end of the move
    assert panel._plan[panel.frame] == (2, 1.0)
    seg_end = np.array(plotter.renderer.actors["rehearsal_segment"].GetMapper().GetInput().GetPoints().GetData())
    assert np.abs(seg_end - seg_start).max() > 3.0  # 3 mm advance plus a 5 deg tilt

    # Paused: the camera orbits freely and the next frame keeps the user's view.
    cam = plotter.camera
    before = np.array(cam.position)
    cam.azimuth = 40.0
    window.scene.request_render()
    orbited = np.array(cam.position)
    assert np.linalg.norm(orbited - before) > 10.0
    panel.show_frame(panel.frame)
    np.testing.assert_allclose(cam.position, orbited)
    window.save_screenshot(screenshots / "rehearsal_panel.png")

    # Export a GIF with progress; the file reads back with every frame.
    out = tmp_path / "tilt.gif"
    assert panel.export_video(out, size=(320, 240))
    assert panel.export_button.text() == "Cancel export" and not panel.play_button.isEnabled()
    qtbot.waitUntil(lambda: panel._export is None, timeout=60_000)
    assert panel.export_result["frames"] == 15 and not window.errors
    assert iio.imread(out).shape == (15, 240, 320, 3)
    # Cancel half-way leaves no file.
    gone = tmp_path / "cancelled.gif"
    assert panel.export_video(gone, size=(320, 240))
    qtbot.waitUntil(lambda: panel.export_progress.value() > 0, timeout=30_000)
    qtbot.mouseClick(panel.export_button, Qt.LeftButton)
    assert panel._export is None and not gone.exists() and not list(tmp_path.glob(".*partial*"))

    # Stop puts the view back.
    qtbot.mouseClick(panel.stop_button, Qt.LeftButton)
    assert not any(n.startswith("rehearsal_") for n in plotter.renderer.actors)
    assert any(window.scene.surface_actors[n].GetVisibility() for n in window.scene.surface_actors)


def test_export_report_action(qtbot, window, twin, tmp_path):
    from app.ui.rehearsal_panel import export_report

    assert "export_report" in window.actions_by_name
    assert not export_report(window, tmp_path / "r.pdf") and window.errors  # no case yet
    load(qtbot, window, twin)
    assert export_report(window, tmp_path / "r.html")
    wait_idle(qtbot, window)
    assert window.last_report["format"] == "html", window.errors
    doc = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert doc.count("data:image/png;base64,") >= 8 and "ProMED" not in doc
