"""Segment editor dock on the Philips head phantom CT (512 x 512 x 28, 0.451 x 0.451 x 5 mm).

Brush strokes are real mouse events on the slice view canvas; the painted
voxel counts are checked against the analytic disk / capsule / sliced-sphere
areas, undo/redo against exact arrays, region growing against an
independent connected-component labelling.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QKeySequence
from scipy import ndimage

from imaging.edit_history import RegionChange
from imaging.segment_tools import paint_disk
from imaging.volume import LabelMap
from tests.ui.conftest import load, wait_idle
from viewer.picking import world_to_display

pytestmark = pytest.mark.gui

#: Voxel-count tolerance against analytic areas: a digitised disk of radius r
#: pixels deviates by O(r^(2/3)) pixels (Gauss circle problem); for r >= 6.6
#: pixels (3 mm on 0.451 mm pixels) that is under 3 %.
AREA_RTOL = 0.03


def _canvas_point(view, ijk) -> QPoint:
    return view.canvas_position(ijk).toPoint()


def _drag(qtbot, canvas, points) -> None:
    qtbot.mousePress(canvas, Qt.LeftButton, Qt.NoModifier, points[0])
    for p in points[1:]:
        qtbot.mouseMove(canvas, p)
    qtbot.mouseRelease(canvas, Qt.LeftButton, Qt.NoModifier, points[-1])


def test_brush_undo_redo_and_grow(qtbot, window, philips_series, screenshots):
    load(qtbot, window, philips_series)
    case, editor = window.case, window.segment_editor
    panel, stack = editor.panel, window.undo_stack
    window.segment_editor_dock.show()
    window.segment_editor_dock.raise_()
    sx, sy, sz = case.primary_volume()[1].geometry.spacing_xyz
    pixel_mm2 = sx * sy

    panel.new_name.setText("lesion")
    qtbot.mouseClick(panel.new_button, Qt.LeftButton)
    assert "lesion" in case.labels and panel.current_label() == "lesion"
    label = case.labels["lesion"]
    assert label.voxel_count(1) == 0 and stack.count() == 1
    events: list[tuple[str, str]] = []
    case.changed.connect(lambda kind, name: events.append((kind, name)))

    # B picks the paint brush (the shortcut is on the window, so it works over the views).
    assert window.actions_by_name["tool_paint"].shortcut() == QKeySequence("B")
    window.actions_by_name["tool_paint"].trigger()
    assert panel.current_tool() == "paint" and window.views.tool is editor._tool
    panel.radius.setValue(4.0)

    view = window.views.views["axial"]
    canvas = view.canvas
    k = view.index
    # One click: a disk of radius 4 mm in the current axial slice.
    centre = _canvas_point(view, (200, 260, k))
    _drag(qtbot, canvas, [centre])
    disk = label.voxel_count(1)
    expected_disk = math.pi * 4.0**2 / pixel_mm2
    assert disk == pytest.approx(expected_disk, rel=AREA_RTOL)
    assert np.all(np.nonzero(label.array)[0] == k)  # only this slice
    assert stack.count() == 2 and events[-1] == ("label", "lesion")
    after_disk = label.array.copy()

    # A straight drag: a capsule, pi r^2 + 2 r L.
    a, b = (300, 150, k), (360, 150, k)
    points = [_canvas_point(view, (i, 150, k)) for i in range(a[0], b[0] + 1, 4)]
    _drag(qtbot, canvas, points)
    length_mm = (view.voxel_at(points[-1])[0] - view.voxel_at(points[0])[0]) * sx
    capsule = label.voxel_count(1) - disk
    assert capsule == pytest.approx((math.pi * 16.0 + 2 * 4.0 * length_mm) / pixel_mm2, rel=AREA_RTOL)
    assert stack.count() == 3
    after_capsule = label.array.copy()
    # The stroke is recorded as `twinplan edit --op paint` records it: replaying the centres gives the same voxels.
    prov = case.provenance["label/lesion"]
    assert prov.operation == "edit_paint" and prov.params["brush"] == "axial" and prov.params["radius_mm"] == 4.0
    assert prov.output_hash == label.content_hash() and len(prov.params["centers_lps"]) > len(points)
    replayed = LabelMap(after_disk.copy(), label.geometry, label.labels)
    for c in prov.params["centers_lps"]:
        replayed = paint_disk(replayed, c, 4.0, axis="axial")
    np.testing.assert_array_equal(replayed.array, after_capsule)
    # Memory-light: the stroke's undo step holds a compressed box, not the 7 MB volume.
    assert stack.command(2).nbytes < 2000

    # Undo/redo restore exact arrays, each announcing the change.
    n_events = len(events)
    stack.undo()
    np.testing.assert_array_equal(label.array, after_disk)
    stack.undo()
    assert label.voxel_count(1) == 0 and case.provenance["label/lesion"].operation == "new_label"
    stack.redo()
    np.testing.assert_array_equal(label.array, after_disk)
    stack.redo()
    np.testing.assert_array_equal(label.array, after_capsule)
    assert events[n_events:] == [("label", "lesion")] * 4

    # ] grows the brush by 25 %; a 3D sphere reaches neighbouring 5 mm slices.
    panel.radius.setValue(6.0)
    window.actions_by_name["brush_larger"].trigger()
    assert panel.radius.value() == pytest.approx(7.5)
    panel.sphere.setChecked(True)
    before = label.voxel_count(1)
    _drag(qtbot, canvas, [_canvas_point(view, (256, 380, k))])
    sphere = label.voxel_count(1) - before
    r = 7.5
    sliced = sum(math.pi * (r * r - (dz * sz) ** 2) for dz in (-1, 0, 1)) / pixel_mm2
    assert sphere == pytest.approx(sliced, rel=AREA_RTOL)
    assert set(np.nonzero(label.array)[0]) == {k - 1, k, k + 1}

    # E erases (only this label) with a disk through the first one.
    window.actions_by_name["tool_erase"].trigger()
    assert panel.current_tool() == "erase"
    panel.sphere.setChecked(False)
    panel.radius.setValue(2.0)
    before = label.voxel_count(1)
    _drag(qtbot, canvas, [centre])
    erased = before - label.voxel_count(1)
    assert erased == pytest.approx(math.pi * 4.0 / pixel_mm2, rel=0.05)  # r = 4.4 px: Gauss error ~5 %
    view.set_point(view.voxel_at(centre))
    window.views.refresh()
    qtbot.wait(50)
    window.grab().save(str(screenshots / "edit_panel_brush.png"))

    # Shift+click still moves the crosshair while a tool is active.
    target = _canvas_point(view, (100, 100, k))
    qtbot.mouseClick(canvas, Qt.LeftButton, Qt.ShiftModifier, target)
    assert window.views.point[:2] == (100, 100)

    # Region growing from a clicked seed, checked against scipy's labelling.
    window.actions_by_name["tool_grow"].trigger()
    assert panel.current_tool() == "grow"
    panel.new_name.setText("phantom")
    qtbot.mouseClick(panel.new_button, Qt.LeftButton)
    panel.grow_preset.setCurrentText("Custom")
    panel.grow_lo.setValue(50)
    panel.grow_hi.setValue(200)
    volume = case.primary_volume()[1]
    seed = (256, 256, k)
    assert 50 <= volume.array[k, 256, 256] <= 200
    qtbot.mouseClick(canvas, Qt.LeftButton, Qt.NoModifier, _canvas_point(view, seed))
    wait_idle(qtbot, window)
    assert not window.errors
    in_range = (volume.array >= 50) & (volume.array <= 200)
    comps, _ = ndimage.label(in_range, structure=np.ones((3, 3, 3)))
    truth = comps == comps[k, 256, 256]
    grown = case.labels["phantom"].array.astype(bool)
    np.testing.assert_array_equal(grown, truth)
    assert truth.sum() > 10000
    stack.undo()
    assert case.labels["phantom"].voxel_count(1) == 0

    # Whole-label tools through the worker: keep the largest island of "lesion".
    panel.set_tool("")
    assert window.views.tool is None
    panel.label.setCurrentText("lesion")
    mask = label.array > 0
    comps, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    largest = np.bincount(comps.ravel())[1:].max()
    assert n >= 2
    qtbot.mouseClick(panel.keep_largest, Qt.LeftButton)
    wait_idle(qtbot, window)
    assert label.voxel_count(1) == largest
    assert case.provenance["label/lesion"].params["islands"] == "largest"
    # Morphology in mm: a 1 mm dilation of the sphere grows it in-plane only (5 mm slices).
    kept = label.voxel_count(1)
    panel.morph_op.setCurrentText("dilate")
    panel.morph_radius.setValue(1.0)
    qtbot.mouseClick(panel.morph_button, Qt.LeftButton)
    wait_idle(qtbot, window)
    assert label.voxel_count(1) > kept and set(np.nonzero(label.array)[0]) == {k - 1, k, k + 1}
    stack.undo()
    assert label.voxel_count(1) == kept
    # Osteotomy: an axial plane through the crosshair splits the sphere into two new labels (one undo step).
    window.views.set_point((256, 380, k))
    panel.split_normal.setCurrentText("axial (S)")
    qtbot.mouseClick(panel.split_button, Qt.LeftButton)
    wait_idle(qtbot, window)
    upper, lower = case.labels["lesion_a"], case.labels["lesion_b"]
    assert upper.voxel_count(1) + lower.voxel_count(1) == kept
    assert set(np.nonzero(lower.array)[0]) == {k - 1}  # below the plane through slice k's centres
    stack.undo()
    assert "lesion_a" not in case.labels and "lesion_b" not in case.labels
    stack.undo()
    assert label.voxel_count(1) == mask.sum()

    # Scissors in 3D: drag a rectangle in a parallel anterior view; everything behind it is cut.
    # The rectangle's edges sit half-way between voxel centres (x at i = 330.5, z at 2.5 slices),
    # so the expected cut is exact: voxels with centre L in (x0, x1) and S in (z0, z1), any P.
    window.actions_by_name["tool_scissors"].trigger()
    assert panel.current_tool() == "scissors" and editor.lasso.enabled
    plotter = window.scene.plotter
    window.scene.reset_camera("anterior")
    plotter.enable_parallel_projection()
    plotter.render()
    g = label.geometry
    lps = lambda i, j, kk: (g.index_to_lps() @ np.array([i, j, kk, 1.0]))[:3]  # noqa: E731
    lo, hi = lps(330.5, 150, k - 2.5), lps(420.5, 150, k + 2.5)
    corners = [world_to_display(plotter, p) for p in (lo, (hi[0], lo[1], lo[2]), hi, (lo[0], lo[1], hi[2]))]
    camera_before = plotter.camera.position
    iren = plotter.iren.interactor
    for n, (x, y) in enumerate(corners + [corners[-1]]):
        iren.SetEventInformation(int(round(x)), int(round(y)))
        iren.InvokeEvent("LeftButtonPressEvent" if n == 0 else "MouseMoveEvent" if n < 4 else "LeftButtonReleaseEvent")
    wait_idle(qtbot, window)
    assert plotter.camera.position == camera_before  # the drag drew, it did not rotate
    kk, jj, ii = np.nonzero(mask)
    centres = (g.index_to_lps() @ np.vstack([ii, jj, kk, np.ones_like(ii)]))[:3]

    def in_box(margin_mm: float) -> int:
        x0, x1 = sorted((lo[0], hi[0]))
        return int(((centres[0] > x0 - margin_mm) & (centres[0] < x1 + margin_mm)
                     & (centres[2] > lo[2] - margin_mm) & (centres[2] < hi[2] + margin_mm)).sum())

    # Mouse events carry whole pixels: the dragged rectangle is exact to half a pixel.
    mm_per_px = abs(hi[0] - lo[0]) / abs(corners[1][0] - corners[0][0])
    removed = mask.sum() - label.voxel_count(1)
    assert in_box(-mm_per_px) <= removed <= in_box(mm_per_px)
    assert case.provenance["label/lesion"].operation == "edit_scissors_view"
    stack.undo()
    # The same rectangle with sub-pixel corners cuts exactly the voxels in the box.
    assert editor.cut_polygon(np.asarray(corners))
    wait_idle(qtbot, window)
    assert 0 < in_box(0.0) < mask.sum()
    assert mask.sum() - label.voxel_count(1) == in_box(0.0)
    stack.undo()
    assert label.voxel_count(1) == mask.sum()
    window.actions_by_name["tool_scissors"].trigger()
    assert not editor.lasso.enabled and panel.current_tool() == ""
    plotter.disable_parallel_projection()
    assert not window.errors


def test_big_label_hash_runs_in_background():
    """A 512 x 512 x 80 label (20 MB) is hashed off the GUI thread; readers wait for the result."""
    from app.case import Provenance
    from app.ui.edit_commands import SYNC_HASH_BYTES, fill_output_hash, output_hash, record_edit
    from imaging.volume import Geometry

    array = np.zeros((80, 512, 512), np.uint8)
    array[10:20, 100:200, 100:200] = 1
    label = LabelMap(array, Geometry((0.5, 0.5, 1.0)), {})
    assert array.nbytes > SYNC_HASH_BYTES
    expected = label.content_hash()
    prov = Provenance("edit_paint", {})
    fill_output_hash(prov, label)
    # The next edit waits for the hash: the record names the state before it.
    record_edit(label, RegionChange((0, 0, 0), np.ones((1, 1, 1), np.uint8)), "next stroke")
    assert output_hash(prov) == expected != label.content_hash()
