"""Virtual FFR dock on the real coronary: compute, lesion table, live scenario lesion, stent, screenshot."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from app.case import Case, Provenance
from tests.ui.conftest import wait_idle
from tests.vessel_cases import coronary_lumen

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def test_ffr_panel_on_the_coronary(qtbot, window, screenshots):
    case = Case("coronary")
    case.set_item("surface", "coronary_lumen", coronary_lumen().wall_surface(), Provenance("import_surface", {}))
    window.set_case(case)
    window.actions_by_name["ffr_panel"].trigger()
    panel = window.ffr_panel
    assert window.ffr_dock.isVisible()
    window.resize(1500, 1000)
    window.resizeDocks([window.ffr_dock], [720], Qt.Vertical)
    assert panel.surface_combo.currentText() == "coronary_lumen"
    qtbot.mouseClick(panel.compute_button, Qt.LeftButton)
    wait_idle(qtbot, window)
    session = panel.session
    assert session is not None, window.errors
    assert len(session.lumen.outlets) == 6
    # the real ~84 % lesion is row 1 of the table and limits flow
    assert panel.table.rowCount() >= 1 and panel.table.item(0, 6).text() == "found"
    assert 75 < float(panel.table.item(0, 2).text()) < 92
    assert session.baseline.ffr_min < 0.80 and "Baseline FFR min" in panel.summary.text()

    # stent it: the plan pane and the curve update at once
    panel.stent_box.setChecked(True)
    assert session.plan is not None and session.plan.ffr_min > 0.9
    assert "stented" in panel.summary.text() and set(panel.view.curves) == {"baseline", "stented"}
    qtbot.wait(300)
    window.ffr_dock.grab().save(str(screenshots / "ffr_panel_stent.png"))

    # a scenario lesion mid-way on the longest healthy terminal branch: deeper severity, lower FFR at its
    # outlet, marked as a scenario in the table
    worst = session.lesions[0].branch
    target = max((i for i in session.tree.terminal_branches() if i != worst and worst not in
                  session.tree.path_to_root(i)), key=lambda i: session.tree.branches[i].length_mm)
    outlet = session.tree.branches[target].port
    panel.branch.setValue(target)
    panel.position.setValue(session.tree.branches[target].length_mm / 2)
    panel.lesion_box.setChecked(True)
    ffr = []
    for sev in (40, 60, 80):
        panel.severity.setValue(sev)
        ffr.append(session.baseline.per_outlet[outlet])
    assert ffr[0] > ffr[1] > ffr[2]
    kinds = [panel.table.item(r, 6).text() for r in range(panel.table.rowCount())]
    assert any(k.startswith("scenario") for k in kinds)
    for pane in (panel.view.baseline, panel.view.plan):
        pane.plotter.render()
    qtbot.wait(500)
    window.ffr_dock.grab().save(str(screenshots / "ffr_panel_scenario.png"))
