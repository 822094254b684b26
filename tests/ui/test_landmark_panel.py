"""Landmarks dock on the Philips head phantom CT: click-placing the template, measurements, undo, files, 3D pick."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt

from imaging.segment import HU_PRESETS
from tests.ui.conftest import load, wait_idle
from viewer.picking import world_to_display

pytestmark = pytest.mark.gui


def _voxel_lps(volume, ijk) -> np.ndarray:
    return (volume.geometry.index_to_lps() @ np.array([*ijk, 1.0]))[:3]


def test_place_measure_undo_export_import(qtbot, window, philips_series, tmp_path, screenshots):
    load(qtbot, window, philips_series)
    case, panel, stack = window.case, window.landmark_panel, window.undo_stack
    volume = case.primary_volume()[1]
    window.actions_by_name["landmarks"].trigger()
    assert window.landmark_dock.isVisible()
    qtbot.mouseClick(panel.place, Qt.LeftButton)
    assert window.views.tool is panel.tool and panel.next_label.text().startswith("Next: S")

    # Three template landmarks (S, N, Or), each clicked in a different view.
    clicks = [("axial", (256, 300, 14)), ("coronal", (200, 256, 20)), ("sagittal", (256, 150, 10))]
    placed = []
    for view_name, ijk in clicks:
        view = window.views.views[view_name]
        view.set_point(ijk)  # page the view to the voxel's slice
        qtbot.mouseClick(view.canvas, Qt.LeftButton, Qt.NoModifier, view.canvas_position(ijk).toPoint())
        placed.append(ijk)
    assert list(case.landmarks) == ["S", "N", "Or"] and stack.count() == 3
    for name, ijk in zip(("S", "N", "Or"), placed):
        np.testing.assert_allclose(case.landmarks[name].position_lps, _voxel_lps(volume, ijk), atol=1e-6)
    s_row = panel.table.findItems("S", Qt.MatchExactly)[0].row()
    assert float(panel.table.item(s_row, 1).text()) == pytest.approx(_voxel_lps(volume, placed[0])[0], abs=0.01)
    assert panel.next_label.text().startswith("Next: Po")

    # S-N distance from the measurement list and the distance chooser.
    expected = float(np.linalg.norm(_voxel_lps(volume, placed[0]) - _voxel_lps(volume, placed[1])))
    rows = {panel.measures.item(r, 0).text(): panel.measures.item(r, 1).text() for r in range(panel.measures.rowCount())}
    assert float(rows["S-N"].split()[0]) == pytest.approx(expected, abs=0.005)
    panel.dist_a.setCurrentText("S")
    panel.dist_b.setCurrentText("N")
    assert panel.distance() == pytest.approx(expected, abs=1e-9)
    assert panel.distance_label.text() == f"{expected:.2f} mm"

    # Undo / redo of a placement; a deleted landmark is put back by selecting its row and clicking.
    stack.undo()
    assert "Or" not in case.landmarks
    stack.redo()
    assert "Or" in case.landmarks
    panel.table.selectRow(panel.table.findItems("N", Qt.MatchExactly)[0].row())
    panel.delete_selected()
    assert "N" not in case.landmarks
    panel.table.selectRow(panel.table.findItems("N", Qt.MatchExactly)[0].row())
    view = window.views.views["axial"]
    qtbot.mouseClick(view.canvas, Qt.LeftButton, Qt.NoModifier, view.canvas_position((300, 200, 14)).toPoint())
    np.testing.assert_allclose(case.landmarks["N"].position_lps, _voxel_lps(volume, (300, 200, 14)), atol=1e-6)
    stack.undo()
    stack.undo()
    np.testing.assert_allclose(case.landmarks["N"].position_lps, _voxel_lps(volume, placed[1]), atol=1e-6)
    window.views.set_point(placed[0])
    qtbot.wait(50)
    window.grab().save(str(screenshots / "landmark_panel.png"))

    # Export .mrk.json (RAS in the file) and CSV; import both back after deleting.
    before = {n: m.position_lps for n, m in case.landmarks.items()}
    mrk = panel.export_file(tmp_path / "ceph.mrk.json")
    doc = json.loads(mrk.read_text())
    point = doc["markups"][0]["controlPoints"][0]
    assert doc["markups"][0]["coordinateSystem"] == "RAS" and point["label"] == "S"
    np.testing.assert_allclose(point["position"], np.array(before["S"]) * [-1, -1, 1], atol=1e-9)
    csv = panel.export_file(tmp_path / "ceph.csv")
    for name in list(case.landmarks):
        panel.table.selectRow(panel.table.findItems(name, Qt.MatchExactly)[0].row())
        assert panel.delete_selected()
    assert not case.landmarks
    count = stack.count()
    assert panel.import_file(mrk) == 3 and stack.count() == count + 1  # one undo step
    for name, pos in before.items():
        np.testing.assert_allclose(case.landmarks[name].position_lps, pos, atol=1e-9)
    stack.undo()
    assert not case.landmarks
    assert panel.import_file(csv) == 3
    for name, pos in before.items():
        np.testing.assert_allclose(case.landmarks[name].position_lps, pos, atol=1e-4)  # CSV keeps 4 decimals

    # Pick on a 3D surface: a bone surface of the phantom, clicked at the projection of a vertex.
    qtbot.mouseClick(panel.place, Qt.LeftButton)
    assert window.views.tool is None
    assert window.segment("bone", *HU_PRESETS["bone"])
    wait_idle(qtbot, window)
    assert window.build_mesh("bone", smoothing_iterations=0, decimate=0.0)
    wait_idle(qtbot, window)
    surface = case.surfaces["bone"]
    window.scene.reset_camera("anterior")
    window.scene.plotter.render()
    panel.pick3d.setChecked(True)
    qtbot.mouseClick(panel.place, Qt.LeftButton)
    assert panel.picker.enabled
    front = np.asarray(surface.points)[np.argmin(surface.points[:, 1])]  # most anterior vertex: visible
    x, y = world_to_display(window.scene.plotter, front)
    picked = panel.picker.pick(x, y)
    assert picked is not None
    assert np.linalg.norm(picked - front) < 1.0  # within a pixel of the vertex (view ~0.5 mm/pixel)
    assert case.landmarks["Po"].position_lps == pytest.approx(tuple(picked))
    qtbot.mouseClick(panel.place, Qt.LeftButton)
    assert not panel.picker.enabled
