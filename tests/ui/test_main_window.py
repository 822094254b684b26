"""The main window driven like a user would, on real CT data (Qt + VTK under Xvfb)."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QKeySequence, QWheelEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from app.render import WINDOW_PRESETS
from app.ui import main_window as main_window_module
from app.ui.main import _parse
from tests.conftest import DEMO_CASE
from tests.ui.conftest import load, wait_idle
from viewer.slice_geometry import VIEWS, display_slice, display_to_index, index_to_display, view_axes

pytestmark = pytest.mark.gui


def _wheel(widget, steps: int, modifiers=Qt.NoModifier) -> None:
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(pos, widget.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.NoButton, modifiers, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def _center_of_image(view) -> QPoint:
    return view.image_rect().center().toPoint()


def test_views_follow_the_direction_matrix():
    """A volume stored with flipped x/y rows shows the same picture as its identity twin."""
    rng = np.random.default_rng(0)
    lps_array = rng.integers(0, 1000, size=(5, 6, 7))  # (z, y, x) on an identity grid
    flipped = lps_array[:, ::-1, ::-1]  # same anatomy, direction diag(-1, -1, 1)
    for view in VIEWS:
        ident = view_axes(view, np.eye(3))
        flip = view_axes(view, np.diag([-1.0, -1.0, 1.0]))
        normal_ident = {"axial": 2, "coronal": 1, "sagittal": 0}[view]
        n = 2
        n_flip = n if normal_ident == 2 else lps_array.shape[2 - normal_ident] - 1 - n
        assert np.array_equal(display_slice(lps_array, ident, n), display_slice(flipped, flip, n_flip))
        assert flip.letters == ident.letters
        dims = (7, 6, 5)
        for ijk in [(0, 0, 0), (6, 5, 4), (3, 1, 2)]:
            row, col, sl = index_to_display(flip, dims, ijk)
            assert display_to_index(flip, dims, row, col, sl) == ijk


def test_open_series_through_worker(qtbot, window, philips_series):
    load(qtbot, window, philips_series)
    volume = window.case.volumes["ct"]
    assert volume.dims_xyz == (512, 512, 28)
    axial = window.views.views["axial"]
    assert axial.slider.maximum() == 27 and axial.index == 14
    assert window.views.point == (256, 256, 14)
    assert window.scene.slice_numbers() == {"axial": 14, "coronal": 256, "sagittal": 256}
    assert "Opened dcm_qa_ct_philips" in window.statusBar().currentMessage()
    assert window.recent.paths()[0] == str(philips_series)
    assert window.windowTitle().startswith("dcm_qa_ct_philips")
    assert not window.errors
    # Radiological display: axial row 0 at the top (anterior), column 0 on the left
    # (patient right); coronal/sagittal superior up, 5 mm slices shown 5 mm tall.
    assert np.array_equal(window.views.views["axial"].displayed_rgb()[..., 0].shape, (512, 512))
    coronal = window.views.views["coronal"]
    rect = coronal.image_rect()
    assert rect.width() / rect.height() == pytest.approx(512 * 0.4512 / (28 * 5.0), rel=0.01)
    assert coronal.axes.letters == {"left": "R", "right": "L", "top": "S", "bottom": "I"}


def test_page_slices_with_wheel_slider_and_keys(qtbot, window, philips_series):
    load(qtbot, window, philips_series)
    axial = window.views.views["axial"]
    _wheel(axial.canvas, 1)
    assert axial.index == 15
    _wheel(axial.canvas, -3)
    assert axial.index == 12
    _wheel(axial.canvas, 1, Qt.ShiftModifier)  # fast paging
    assert axial.index == 17
    axial.slider.setValue(3)
    assert axial.index == 3
    # The crosshair follows: other views and the 3D planes show axial slice 3.
    assert window.views.point[2] == 3
    assert window.scene.slice_numbers()["axial"] == 3
    axial.canvas.setFocus()
    qtbot.keyClick(axial.canvas, Qt.Key_Up)
    assert axial.index == 4
    qtbot.keyClick(axial.canvas, Qt.Key_End)
    assert axial.index == 27
    sagittal = window.views.views["sagittal"]
    _wheel(sagittal.canvas, -2)
    assert sagittal.index == 254 and window.views.point[0] == 254


def test_hover_shows_hu_and_click_moves_crosshair(qtbot, window, philips_series):
    load(qtbot, window, philips_series)
    axial = window.views.views["axial"]
    pos = _center_of_image(axial) + QPoint(40, -60)
    ijk = axial.voxel_at(QPointF(pos))
    qtbot.mouseMove(axial.canvas, pos)
    qtbot.waitUntil(lambda: window.cursor_label.text().startswith("HU"))
    i, j, k = ijk
    hu = window.case.volumes["ct"].array[k, j, i]
    text = window.cursor_label.text()
    assert text.startswith(f"HU {hu:.0f} ") and f"voxel ({i}, {j}, {k})" in text
    assert "LPS (" in text and " mm" in text
    qtbot.mouseClick(axial.canvas, Qt.LeftButton, pos=pos)
    assert window.views.point == ijk
    assert window.views.views["coronal"].index == j
    assert window.views.views["sagittal"].index == i
    assert window.scene.slice_numbers() == {"axial": k, "coronal": j, "sagittal": i}


def test_window_level_presets_and_mouse(qtbot, window, philips_series):
    load(qtbot, window, philips_series)
    axial = window.views.views["axial"]
    window.wl_combo.setCurrentText("Bone (W2000 L400)")
    assert axial.window_level() == WINDOW_PRESETS["bone"]
    assert window.views.views["sagittal"].window_level() == WINDOW_PRESETS["bone"]
    start = _center_of_image(axial)
    qtbot.mousePress(axial.canvas, Qt.RightButton, pos=start)
    qtbot.mouseMove(axial.canvas, start + QPoint(50, 20))
    qtbot.mouseRelease(axial.canvas, Qt.RightButton, pos=start + QPoint(50, 20))
    window_hu, level_hu = axial.window_level()
    assert window_hu > 2000 and level_hu > 400
    assert window.views.views["coronal"].window_level() == (window_hu, level_hu)
    assert window.wl_combo.currentText() == "Custom"


def test_segment_mesh_undo_redo_save_export(qtbot, window, philips_series, tmp_path, screenshots):
    load(qtbot, window, philips_series)
    axial = window.views.views["axial"]
    plain = axial.displayed_rgb().copy()
    panel = window.seg_panel
    panel.label_name.setText("bone")
    panel.set_range(300, 3071)  # editing turns the live preview on
    assert panel.preview.isChecked()
    preview = axial.displayed_rgb()
    assert (np.abs(preview.astype(int) - plain).sum(axis=2) > 0).sum() > 500
    qtbot.mouseClick(panel.segment_button, Qt.LeftButton)
    wait_idle(qtbot, window)
    assert "bone" in window.case.labels, window.errors
    voxels = window.case.labels["bone"].voxel_count(1)
    # Skull of the phantom: about 3 % of the 7.3 million voxels.
    assert 1e5 < voxels < 1e6
    assert not panel.preview.isChecked()  # the new label replaces the preview
    assert "voxels" in window.statusBar().currentMessage()

    panel.smoothing.setValue(5)
    panel.decimate.setValue(0.8)
    qtbot.mouseClick(panel.mesh_button, Qt.LeftButton)
    wait_idle(qtbot, window)
    assert "bone" in window.case.surfaces, window.errors
    actor = window.scene.surface_actors["bone"]
    assert actor in window.scene.plotter.renderer.actors.values()
    assert window.case.surfaces["bone"].n_cells > 1000
    window.save_screenshot(screenshots / "segmentation.png")

    undo, redo = window.actions_by_name["undo"], window.actions_by_name["redo"]
    assert QKeySequence("Ctrl+Z") in undo.shortcuts() and QKeySequence("Ctrl+Shift+Z") in redo.shortcuts()
    undo.trigger()
    assert "bone" not in window.case.surfaces and "bone" not in window.scene.surface_actors
    assert actor not in window.scene.plotter.renderer.actors.values()
    undo.trigger()
    assert "bone" not in window.case.labels
    redo.trigger()
    redo.trigger()
    assert window.case.labels["bone"].voxel_count(1) == voxels
    assert "bone" in window.scene.surface_actors
    assert window.isWindowModified()

    assert window.save_project_as(tmp_path / "head")
    wait_idle(qtbot, window)
    assert window.project_path == tmp_path / "head.twin" and not window.isWindowModified()
    out = window.export_mesh("bone", tmp_path / "bone.stl")
    assert out is not None and out.stat().st_size > 10_000
    load(qtbot, window, tmp_path / "head.twin")
    assert set(window.case.surfaces) == {"bone"} and "bone" in window.scene.surface_actors
    assert not window.errors


def test_cancel_import_and_segment_leave_case_unchanged(qtbot, window, philips_series, large_series):
    load(qtbot, window, philips_series)
    case = window.case
    assert window.open_path(large_series)
    assert window.cancel_button.isVisible()
    qtbot.mouseClick(window.cancel_button, Qt.LeftButton)
    wait_idle(qtbot, window)
    assert window.case is case and list(case.volumes) == ["ct"]
    assert case.volumes["ct"].dims_xyz == (512, 512, 28)
    assert window.statusBar().currentMessage().startswith("Cancelled")
    assert not window.progress_bar.isVisible()

    assert window.segment("bone", 226, 3071)
    window.runner.cancel()
    wait_idle(qtbot, window)
    assert "bone" not in case.labels and window.undo_stack.count() == 0
    assert window.statusBar().currentMessage().startswith("Cancelled")
    assert not window.errors


def test_errors_reach_one_handler_and_app_keeps_running(qtbot, window, philips_series, tmp_path, monkeypatch):
    missing = tmp_path / "no_such_folder"
    assert window.open_path(missing)
    wait_idle(qtbot, window)
    assert len(window.errors) == 1 and str(missing) in window.errors[0]
    assert window.case is None and "Error" in window.statusBar().currentMessage()

    load(qtbot, window, philips_series)
    case = window.case
    window.segment("bone", 500, 100)  # inverted range: InputError from the pipeline
    wait_idle(qtbot, window)
    assert "lower threshold" in window.errors[-1] and not case.labels

    def broken_step(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(main_window_module, "step_segment", broken_step)
    window.segment("bone", 226, 3071)
    wait_idle(qtbot, window)
    assert "unexpected error" in window.errors[-1] and "simulated crash" in window.errors[-1]
    assert window.case is case and not case.labels and window.undo_stack.count() == 0
    window.build_mesh("nothing")  # no such label
    assert "segment it first" in window.errors[-1]
    assert len(window.errors) == 4


def test_folder_with_two_series_asks_which(qtbot, window, two_series):
    folder, counts = two_series
    offered = []
    window.choose_series = lambda series: offered.append(series) or None
    assert window.open_path(folder)
    wait_idle(qtbot, window)
    assert window.case is None and window.statusBar().currentMessage().startswith("Cancelled")
    small = min(counts, key=counts.get)
    window.choose_series = lambda series: offered.append(series) or small
    assert window.open_path(folder)
    wait_idle(qtbot, window)
    assert {s.series_uid for s in offered[0]} == set(counts)
    assert window.case.volumes["ct"].dims_xyz == (64, 64, counts[small])
    assert window.case.volumes["ct"].series_uid == small
    assert not window.errors


def test_drop_folder_opens_it(qtbot, window, philips_series):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(philips_series))])
    event = QDropEvent(QPointF(100, 100), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.dropEvent(event)
    wait_idle(qtbot, window)
    assert window.case is not None and window.case.volumes["ct"].dims_xyz == (512, 512, 28)


def test_layout_help_and_command_line(qtbot, window):
    window.set_layout("axial")
    assert window.views.views["axial"].isVisible() and not window.scene.isVisible()
    window.views.views["axial"].double_clicked.emit()
    assert window.scene.isVisible() and window.views.views["coronal"].isVisible()
    window.show_about()
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert boxes and "VTK" in boxes[-1].text() and "dolfinx" in boxes[-1].text()
    boxes[-1].close()
    assert _parse(["/some/folder"]).path == "/some/folder"


def test_demo_case_volume_rendering_screenshot(qtbot, window, screenshots):
    path = DEMO_CASE if DEMO_CASE.is_file() else None
    if path is None:
        pytest.fail(f"demo case missing: {DEMO_CASE}")
    load(qtbot, window, path)
    assert window.case.volumes["ct"].dims_xyz == (256, 256, 108)
    window.wl_combo.setCurrentText("Bone (W2000 L400)")
    window.seg_panel.set_visible("label", "inv_mask_1", False)  # skin mask hides the anatomy
    window.seg_panel.set_visible("surface", "inv_surface_1", False)
    window.seg_panel.set_visible("surface", "inv_surface_0", False)  # show the volume rendering
    assert not window.scene.surface_actors["inv_surface_1"].GetVisibility()
    window.render_panel.slices.setChecked(False)
    window.render_panel.enabled.setChecked(True)
    window.render_panel.shift.setValue(-50)
    window.render_panel.opacity.setValue(120)
    assert window.scene.volume_actor is not None and window.scene.volume_actor.GetVisibility()
    window.render_panel.camera_requested.emit("anterior")
    shot = window.scene.screenshot()
    assert shot.std() > 20
    image = window.grab_window()
    out = window.save_screenshot(screenshots / "main_window.png")
    assert out.is_file()
    pixels = np.frombuffer(image.constBits(), np.uint8)[: image.sizeInBytes()]
    assert pixels.std() > 30
    # The 3D area of the composed screenshot holds the VTK render, not a blank widget.
    render_widget = window.scene.plotter.interactor
    top_left = render_widget.mapTo(window, QPoint(0, 0))
    region = image.copy(top_left.x(), top_left.y(), render_widget.width(), render_widget.height())
    region_pixels = np.frombuffer(region.constBits(), np.uint8)[: region.sizeInBytes()]
    assert region_pixels.std() > 20
