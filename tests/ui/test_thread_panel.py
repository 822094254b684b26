"""History dock on a real case (Cranium): the provenance tree, "show inputs", "redo from here" with undo."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app.case import Provenance
from app.pipeline import StepResult
from app.project import load_case
from app.ui.commands import ApplyStepCommand
from imaging.volume import LabelMap
from tests.app.twin_cases import cranium_twin
from tests.ui.conftest import wait_idle

pytest.importorskip("dolfinx", reason="Debian python3-dolfinx-real is installed by make setup")

pytestmark = [pytest.mark.gui, pytest.mark.fem, pytest.mark.slow]


def test_history_tree_inputs_and_redo(qtbot, window, screenshots):
    case = load_case(cranium_twin())
    original = case.labels["maxilla"].array.copy()
    window.set_case(case)
    window.actions_by_name["thread_panel"].trigger()
    panel = window.thread_controller.panel
    assert window.thread_dock.isVisible() and panel.isVisible()
    tops = [panel.tree.topLevelItem(i).data(0, Qt.UserRole) for i in range(panel.tree.topLevelItemCount())]
    assert len(tops) == 11 and tops.index("label/bone") < tops.index("label/maxilla")
    assert "surface/predicted_skin_maxilla" in tops

    # Show inputs: selected and tinted here, selected in the segmentation panel.
    assert panel.select("surface/predicted_skin_maxilla")
    assert "tissue_linear" in panel.details.toPlainText()
    qtbot.mouseClick(panel.show_inputs_button, Qt.LeftButton)
    chosen = {row.data(0, Qt.UserRole) for row in panel.tree.selectedItems()}
    assert chosen == {"label/skin", "label/maxilla", "label/cranium"}
    seg = {tuple(r.data(0, Qt.UserRole)) for r in window.seg_panel.items.selectedItems()}
    assert seg == {("label", "skin"), ("label", "maxilla"), ("label", "cranium")}
    assert "Inputs of surface/predicted_skin_maxilla" in panel.status.text()
    window.thread_dock.raise_()
    qtbot.wait(200)
    window.grab().save(str(screenshots / "thread_panel_inputs.png"))

    # Someone scribbles on the maxilla outside the recorded thread (same provenance, new content)...
    scribbled = original.copy()
    scribbled[:20] = 0
    prov = Provenance.from_json(case.provenance["label/maxilla"].to_json())
    lab = LabelMap(scribbled, case.labels["maxilla"].geometry, case.labels["maxilla"].labels)
    window.undo_stack.push(ApplyStepCommand(case, StepResult("label", "maxilla", lab, prov), "Scribble"))
    assert not np.array_equal(case.labels["maxilla"].array, original)
    qtbot.waitUntil(lambda: panel.select("label/maxilla"), timeout=5000)
    # ...redo from here recomputes it (and the prediction that uses it) through the worker, one undo step.
    steps = window.undo_stack.count()
    qtbot.mouseClick(panel.redo_button, Qt.LeftButton)
    wait_idle(qtbot, window)
    assert not window.errors, window.errors
    assert window.undo_stack.count() == steps + 1
    assert window.undo_stack.undoText() == "Redo from label/maxilla"
    assert np.array_equal(case.labels["maxilla"].array, original)
    assert "2 item(s)" in panel.status.text() and "surface/predicted_skin_maxilla" in panel.status.text()
    window.undo_stack.undo()
    assert np.array_equal(case.labels["maxilla"].array, scribbled)
    window.undo_stack.redo()
    assert np.array_equal(case.labels["maxilla"].array, original)
    qtbot.wait(200)
    window.grab().save(str(screenshots / "thread_panel_redo.png"))


def test_followup_from_the_gui(qtbot, window, screenshots):
    """Plan > Compare with follow-up scan: worker, one undo step, numbers in the History dock."""
    from tests.app.twin_cases import NOISE_MM, cranium_postop

    scan, found, _truth = cranium_postop()
    case = load_case(cranium_twin())
    window.set_case(case)
    controller = window.thread_controller
    assert "followup" in window.actions_by_name
    steps = window.undo_stack.count()
    assert controller.import_followup(str(scan), str(found))
    # Registration + segmentation + meshing: ~25 s of CPU; allow for a shared, loaded machine.
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=600_000)
    assert not window.errors, window.errors
    assert window.undo_stack.count() == steps + 1 and "followup_distance" in case.surfaces
    report = controller.report
    assert report["distance"]["median_abs_mm"] < 1.5 * NOISE_MM  # as in tests/app/test_followup.py
    assert report["landmarks"]["pronasale"]["error_mm"] < 1.0
    panel = controller.panel
    qtbot.waitUntil(lambda: panel.selected_id() == "surface/followup_distance", timeout=5000)
    assert "median |d|" in panel.status.text()
    window.thread_dock.raise_()
    qtbot.wait(200)
    window.grab().save(str(screenshots / "thread_panel_followup.png"))
    window.undo_stack.undo()
    assert "followup_distance" not in case.surfaces and "followup_ct" not in case.volumes
