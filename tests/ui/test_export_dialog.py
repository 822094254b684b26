"""File > Export volume or label: DICOM de-identified by default, NRRD, through the worker."""
from __future__ import annotations

import pytest
import SimpleITK as sitk

from app.ui.export_dialog import export_item_dialog
from tests.conftest import data_path
from tests.imaging.test_deidentify import assert_no_identifiers, original_identifiers
from tests.ui.conftest import load, wait_idle

pytestmark = pytest.mark.gui


def test_export_dialog_dicom_deidentified_and_nrrd(qtbot, window, philips_series, tmp_path, screenshots):
    load(qtbot, window, philips_series)
    action = window.actions_by_name["export_item"]
    assert action.shortcut().toString() == "Ctrl+Shift+E" and action.toolTip()
    seen = {}

    def choose_dicom(dialog):
        dialog.show()
        assert dialog.item_combo.currentData()[0] == "volume"
        dialog.format_combo.setCurrentIndex(dialog.format_combo.findData("dicom"))
        seen["deid_default"] = dialog.deid_check.isChecked()
        dialog.path_edit.setText(str(tmp_path / "ct_out"))
        dialog.grab().save(str(screenshots / "export_dialog.png"))
        return True

    assert export_item_dialog(window, accept=choose_dicom)
    wait_idle(qtbot, window)
    assert seen["deid_default"] is True and not window.errors
    files = sorted((tmp_path / "ct_out").iterdir())
    assert len(files) == 28 and window.last_export.deidentified
    texts, uids = original_identifiers(data_path("dcm_qa_ct_philips"))
    assert_no_identifiers(files, texts, uids)
    assert "de-identified" in window.statusBar().currentMessage()

    def choose_nrrd(dialog):
        dialog.format_combo.setCurrentIndex(dialog.format_combo.findData("nrrd"))
        seen["deid_nrrd"] = (dialog.deid_check.isChecked(), dialog.deid_check.isEnabled())
        dialog.path_edit.setText(str(tmp_path / "ct.nrrd"))
        return True

    assert export_item_dialog(window, accept=choose_nrrd)
    wait_idle(qtbot, window)
    assert seen["deid_nrrd"] == (False, False)
    image = sitk.ReadImage(str(tmp_path / "ct.nrrd"))
    volume = window.case.primary_volume()[1]
    assert sitk.GetArrayFromImage(image).shape == volume.array.shape
    assert (sitk.GetArrayFromImage(image) == volume.array).all()


def test_export_into_a_non_empty_folder_is_refused_and_case_kept(qtbot, window, philips_series, tmp_path):
    load(qtbot, window, philips_series)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    before = window.case.primary_volume()[1].array.copy()

    def choose(dialog):
        dialog.format_combo.setCurrentIndex(dialog.format_combo.findData("dicom"))
        dialog.path_edit.setText(str(tmp_path / "busy"))
        return True

    assert export_item_dialog(window, accept=choose)
    wait_idle(qtbot, window)
    assert window.errors and "busy" in str(window.errors[-1])
    assert (window.case.primary_volume()[1].array == before).all()
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
