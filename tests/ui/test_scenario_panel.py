"""Scenarios dock on the Cranium case: add/branch/rename/delete with undo, run, sweep, cancel, compare view."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.app.scenario_case import advancement, cranium_case
from tests.ui.conftest import wait_idle

pytest.importorskip("dolfinx", reason="Debian python3-dolfinx-real is installed by make setup")

pytestmark = [pytest.mark.gui, pytest.mark.fem, pytest.mark.slow]
RUN_TIMEOUT_MS = 180_000


def _click(qtbot, controller, key):
    qtbot.mouseClick(controller.panel.buttons[key], Qt.LeftButton)


def _select(panel, *names):
    for i in range(panel.list.count()):
        item = panel.list.item(i)
        item.setSelected(item.data(Qt.UserRole) in names)


def test_scenarios_dock_on_cranium(qtbot, window, screenshots):
    window.set_case(cranium_case())
    case = window.case
    ctl = window.scenarios
    panel = ctl.panel
    window.actions_by_name["scenario_panel"].trigger()
    assert window.scenario_dock.isVisible() and panel.list.count() == 0

    # Add, undo, redo.
    panel.name.setText("advance 5")
    panel.params.setPlainText(json.dumps(advancement()))
    _click(qtbot, ctl, "add")
    assert list(case.scenarios) == ["advance 5"] and panel.list.count() == 1, window.errors
    window.undo_stack.undo()
    assert case.scenarios == {} and panel.list.count() == 0
    window.undo_stack.redo()
    assert list(case.scenarios) == ["advance 5"] and panel.list.count() == 1

    # Branch with a 5 degree yaw; rename it and undo the rename.
    _select(panel, "advance 5")
    params = json.loads(panel.params.toPlainText())
    assert params["move"] == [0.0, -5.0, 0.0, 0.0, 0.0, 0.0]  # the selection shows its parameters
    panel.name.setText("yaw")
    panel.params.setPlainText(json.dumps(dict(params, move=[0, -5, 0, 0, 0, 5])))
    _click(qtbot, ctl, "branch")
    assert case.scenarios["yaw"].parent == "advance 5" and case.scenarios["yaw"].params["move"][5] == 5.0
    panel.name.setText("advance 5 yaw")
    _click(qtbot, ctl, "rename")
    assert list(case.scenarios) == ["advance 5", "advance 5 yaw"]
    window.undo_stack.undo()
    assert list(case.scenarios) == ["advance 5", "yaw"]
    window.undo_stack.redo()

    # Bad parameters reach the one error handler; nothing changes.
    panel.name.setText("bad")
    panel.params.setPlainText("{not json")
    _click(qtbot, ctl, "add")
    assert "not valid JSON" in window.errors[-1] and "bad" not in case.scenarios

    # Run both (worker, one after the other); each result is one undo step.
    _select(panel, "advance 5", "advance 5 yaw")
    undo_count = window.undo_stack.count()
    _click(qtbot, ctl, "run")
    qtbot.waitUntil(lambda: all(s.results for s in case.scenarios.values()) and not window.runner.busy,
                    timeout=RUN_TIMEOUT_MS)
    assert window.undo_stack.count() == undo_count + 2, window.errors
    a, y = case.scenarios["advance 5"], case.scenarios["advance 5 yaw"]
    assert 0.5 < a.summary["max_skin_displacement_mm"] <= 5.0 + 1e-6
    assert y.summary["max_skin_displacement_mm"] > a.summary["max_skin_displacement_mm"]
    assert "max skin displacement" in panel.list.item(0).text()
    window.undo_stack.undo()
    assert case.scenarios["advance 5 yaw"].results == {}
    window.undo_stack.redo()
    assert case.scenarios["advance 5 yaw"].summary == y.summary

    # Sweep (serial here: the Dask path is tested in tests/app/test_sweep.py); then a cancelled sweep.
    _select(panel, "advance 5")
    panel.samples.setValue(2)
    panel.workers.setValue(0)
    _click(qtbot, ctl, "sweep")
    wait_idle(qtbot, window)
    sweep = case.scenarios["advance 5"].results.get("sweep")
    assert sweep is not None and sweep["n_samples"] == 2, window.errors
    assert "5-95 %" in panel.info.text() and "swept" in panel.list.item(0).text()
    panel.samples.setValue(50)
    before = case.scenarios["advance 5"]
    _click(qtbot, ctl, "sweep")
    assert window.runner.busy
    window.runner.cancel()  # stops at the sweep's next check (after meshing), before any solve
    wait_idle(qtbot, window)
    assert case.scenarios["advance 5"] is before and window.statusBar().currentMessage().startswith("Cancelled")

    # Compare: two panes plus the difference, cameras linked, the outcomes table, a linked section.
    _select(panel, "advance 5", "advance 5 yaw")
    _click(qtbot, ctl, "compare")
    view = ctl.compare_view
    qtbot.waitExposed(view)
    assert view.names == ["advance 5", "advance 5 yaw"] and view.difference is not None
    assert view.difference["difference_mm"].max() > 0.5
    cams = view.cameras()
    assert all(c is cams[0] for c in cams)  # one shared camera: linked views
    rows = view.table_rows()
    assert rows["max_skin_displacement_mm"] == [f"{a.summary['max_skin_displacement_mm']:.4g}",
                                                f"{y.summary['max_skin_displacement_mm']:.4g}"]
    assert "pronasale_displacement_mm (5-95 %)" in rows and rows["solver: dofs"][0] == str(a.results["solver"]["dofs"])
    qtbot.wait(300)
    view.plotter.render()
    view.grab().save(str(screenshots / "scenario_compare.png"))
    view.section_axis.setCurrentText("sagittal (x)")
    view.section_slider.setValue(500)
    view.plotter.subplot(0, 0)
    cut = view.plotter.renderer.actors["scenario_0"].GetMapper().GetInput()
    assert 0 < cut.GetNumberOfPoints() < a.surfaces["skin"].n_points
    qtbot.wait(300)
    view.plotter.render()
    view.grab().save(str(screenshots / "scenario_compare_section.png"))
    window.grab().save(str(screenshots / "scenario_dock.png"))

    # Delete with undo.
    _select(panel, "advance 5")
    _click(qtbot, ctl, "delete")
    assert list(case.scenarios) == ["advance 5 yaw"] and case.scenarios["advance 5 yaw"].parent == "baseline"
    window.undo_stack.undo()
    assert list(case.scenarios) == ["advance 5", "advance 5 yaw"]
    assert case.scenarios["advance 5 yaw"].parent == "advance 5"
    assert np.isfinite(case.scenarios["advance 5"].summary["max_skin_displacement_mm"])
    view.close()


def test_compare_ffr_scenarios(qtbot, window, screenshots):
    from app.scenarios import add_scenario, branch_scenario, run_scenario
    from tests.app.scenario_case import vmtk_centerline_case

    case = vmtk_centerline_case()
    add_scenario(case, "lesion 45%", "ffr", {"centerline": "centerline", "lesions": [
        {"branch": 1, "position_mm": 20.0, "severity": 0.45, "length_mm": 10.0}]})
    branch_scenario(case, "lesion 45%", "stented", {"stents": [0]})
    for name in case.scenarios:
        run_scenario(case, name)  # 1D: milliseconds, in this process
    window.set_case(case)
    ctl = window.scenarios
    assert ctl.panel.list.count() == 2 and "ffr min" in ctl.panel.list.item(0).text()
    _select(ctl.panel, "lesion 45%", "stented")
    _click(qtbot, ctl, "compare")
    view = ctl.compare_view
    qtbot.waitExposed(view)
    diff = view.difference
    # Stenting raises the distal FFR of the treated branch from ~0.78 to ~1: a positive difference there.
    assert diff.active_scalars_name == "ffr_difference" and 0.15 < diff["ffr_difference"].max() < 0.25
    assert abs(diff["ffr_difference"].min()) < 0.01
    rows = view.table_rows()
    assert float(rows["ffr_branch_1"][0]) < 0.8 < float(rows["ffr_branch_1"][1])
    view.plotter.subplot(0, 0)
    assert view.plotter.renderer.actors["scenario_0"].GetMapper().GetArrayName() in ("FFR", "")
    qtbot.wait(300)
    view.plotter.render()
    view.grab().save(str(screenshots / "scenario_compare_ffr.png"))
    view.close()
