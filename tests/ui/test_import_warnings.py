"""Import warnings box, scan kind in the status bar and CBCT threshold presets (Qt under Xvfb)."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QDialogButtonBox

from imaging.phantom import SpherePhantom, write_oriented_series
from imaging.segment import HU_PRESETS, presets_for
from tests.conftest import data_path
from tests.ui.conftest import load

pytestmark = pytest.mark.gui


def _save_with_dialog(window, dialog, path) -> None:
    """The window and the (separate, top-level) warnings box as one picture."""
    image = window.grab_window()
    painter = QPainter(image)
    painter.drawImage(dialog.mapToGlobal(QPoint(0, 0)) - window.mapToGlobal(QPoint(0, 0)), dialog.grab().toImage())
    painter.end()
    assert image.save(str(path))


def test_gantry_tilt_warnings_box(qtbot, window, screenshots):
    load(qtbot, window, data_path("dcm_qa_ct_ge_tilt"))
    dialog = window.warnings_dialog
    qtbot.waitUntil(dialog.isVisible)
    assert not dialog.isModal()
    warnings = dialog.warnings()
    assert any(w.startswith("gantry tilt 18.5 deg") for w in warnings), warnings
    assert any(w.startswith("resampled onto a regular grid") for w in warnings), warnings
    assert warnings == window.case.volumes["ct"].warnings
    status = window.scan_status
    assert status.kind_label.text() == "CT" and status.warnings_button.isVisible()
    assert status.warnings_button.text() == f"{len(warnings)} import warnings"
    assert "import warnings: see the warnings box" in window.statusBar().currentMessage()
    assert window.seg_panel.presets == HU_PRESETS and window.seg_panel.lower_label.text() == "Lower (HU)"
    # Centre the box over the window so the screenshot shows both.
    dialog.move(window.mapToGlobal(window.rect().center()) - dialog.rect().center())
    _save_with_dialog(window, dialog, screenshots / "import_warnings.png")

    # Non-modal: the window keeps working while the box is open.
    window.wl_combo.setCurrentText("Bone (W2000 L400)")
    assert window.views.views["axial"].window_level() == (2000.0, 400.0)
    close = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.Close)
    qtbot.mouseClick(close, Qt.LeftButton)
    assert not dialog.isVisible()
    qtbot.mouseClick(status.warnings_button, Qt.LeftButton)  # reopen from the status bar
    assert dialog.isVisible() and dialog.warnings() == warnings
    assert not window.errors


def test_cbct_kind_and_presets(qtbot, window, philips_series, tmp_path):
    cbct = SpherePhantom(center_xyz=(12.0, -30.0, 85.0), radius_mm=6.0, bone_hu=2500, tissue_hu=900, air_hu=0)
    row, col = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    first = np.asarray(cbct.center_xyz) - 9.6 * (row + col) - 9.6 * np.cross(row, col)
    write_oriented_series(cbct, tmp_path, size_rc=(64, 64), n_slices=64, pixel_spacing_xy=(0.3, 0.3),
                          slice_step_mm=0.3, row_dir=row, col_dir=col, first_position=first,
                          extra={"Manufacturer": "Planmeca"}, intercept=0.0)
    load(qtbot, window, tmp_path)
    volume = window.case.volumes["ct"]
    assert volume.kind == "cbct"
    assert window.scan_status.kind_label.text() == "CBCT"
    assert "not Hounsfield" in window.scan_status.kind_label.toolTip()
    assert "CBCT" in window.statusBar().currentMessage()
    assert any("cone-beam CT" in w for w in window.warnings_dialog.warnings())

    panel = window.seg_panel
    expected = presets_for(volume)
    assert panel.presets == expected and panel.presets != HU_PRESETS
    assert panel.preset.currentText() == "bone"
    assert panel.lower.value() == pytest.approx(expected["bone"][0], abs=0.5)  # spin box shows whole values
    assert panel.lower_label.text() == "Lower (grey value)"
    assert not panel.preview.isChecked()  # new presets do not switch the overlay on
    panel.preset.setCurrentText("skin")
    assert panel.lower.value() == pytest.approx(expected["skin"][0], abs=0.5)

    load(qtbot, window, philips_series)  # a calibrated CT brings the HU presets back
    assert panel.presets == HU_PRESETS and panel.lower.value() == HU_PRESETS["skin"][0]
    assert window.scan_status.kind_label.text() == "CT"
    assert not window.scan_status.warnings_button.isVisible() and not window.warnings_dialog.isVisible()
    assert not window.errors
