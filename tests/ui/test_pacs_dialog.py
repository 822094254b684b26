"""The PACS dialog driven like a user against a real Orthanc: add server, search, retrieve."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

from app.ui.pacs_dialog import PacsDialog, ServerDialog
from imaging.pacs import PacsNode, store_files
from tests.conftest import data_path
from tests.pacs_server import free_port, orthanc  # noqa: F401 -- the fixture

pytestmark = pytest.mark.gui
TASK_TIMEOUT_MS = 30_000


@pytest.fixture
def settings(tmp_path) -> QSettings:
    return QSettings(str(tmp_path / "twinplan.ini"), QSettings.IniFormat)


@pytest.fixture
def dialog(qtbot, settings):
    dlg = PacsDialog(settings=settings)
    qtbot.addWidget(dlg)
    dlg.resize(1100, 640)
    dlg.show()
    qtbot.waitExposed(dlg)
    yield dlg
    dlg.runner.shutdown()


def _wait_idle(qtbot, dlg) -> None:
    qtbot.waitUntil(lambda: not dlg.runner.busy, timeout=TASK_TIMEOUT_MS)


def _add_server_like_a_user(qtbot, dlg, name: str, node: PacsNode) -> None:
    """Click Add..., fill the server form and press OK."""
    def fill() -> None:
        form = QApplication.activeModalWidget()
        assert isinstance(form, ServerDialog)
        form.name_edit.setText(name)
        form.host_edit.setText(node.host)
        form.port_spin.setValue(node.port)
        form.aet_edit.setText(node.ae_title)
        form.accept()

    QTimer.singleShot(0, fill)
    qtbot.mouseClick(dlg.add_button, Qt.LeftButton)


def test_search_and_retrieve_series(qtbot, dialog, settings, orthanc, tmp_path, screenshots):  # noqa: F811
    assert store_files(orthanc.node, [data_path("dcm_qa_ct_philips")])["stored"] == 28
    _add_server_like_a_user(qtbot, dialog, "Test Orthanc", orthanc.node)
    assert dialog.server_combo.currentText() == "Test Orthanc"
    assert dialog.current_node() == orthanc.node

    dialog.id_edit.setText("PLASTIC")
    dialog.modality_combo.setCurrentText("CT")
    qtbot.mouseClick(dialog.search_button, Qt.LeftButton)
    _wait_idle(qtbot, dialog)
    assert dialog.tree.topLevelItemCount() == 1, dialog.status_label.text()
    study = dialog.tree.topLevelItem(0)
    assert (study.text(0), study.text(1), study.text(2)) == ("HEAD", "PLASTIC", "2015-02-06")

    dialog.tree.setCurrentItem(study)  # selecting a study lists its series
    _wait_idle(qtbot, dialog)
    assert study.childCount() == 1
    series = study.child(0)
    assert (series.text(3), series.text(5)) == ("CT", "28")
    assert not dialog.retrieve_button.isEnabled()
    dialog.tree.setCurrentItem(series)
    assert dialog.retrieve_button.isEnabled()

    dialog.folder_edit.setText(str(tmp_path / "downloads"))
    with qtbot.waitSignal(dialog.retrieved, timeout=TASK_TIMEOUT_MS) as blocker:
        qtbot.mouseClick(dialog.retrieve_button, Qt.LeftButton)
    folder = Path(blocker.args[0])
    assert folder.parent == tmp_path / "downloads"
    assert len([f for f in folder.iterdir() if f.suffix == ".dcm"]) == 28
    _wait_idle(qtbot, dialog)
    assert dialog.progress_bar.value() == dialog.progress_bar.maximum()
    assert "Retrieved 28 images" in dialog.status_label.text()
    dialog.grab().save(str(screenshots / "pacs_dialog.png"))

    again = PacsDialog(settings=settings)  # the server list and folder survive in QSettings
    qtbot.addWidget(again)
    assert again.current_node() == orthanc.node
    assert again.folder_edit.text() == str(tmp_path / "downloads")


def test_connection_error_shows_in_status_line(qtbot, dialog):
    port = free_port()
    dialog.add_server("Nowhere", PacsNode("127.0.0.1", port, "NOWHERE"))
    qtbot.mouseClick(dialog.echo_button, Qt.LeftButton)
    _wait_idle(qtbot, dialog)
    assert dialog.status_label.text() == f"cannot connect to PACS 127.0.0.1:{port} NOWHERE: connection refused"
    assert dialog.search_button.isEnabled() and not dialog.cancel_button.isEnabled()


def test_server_form_rejects_bad_ae_title(qtbot, dialog):
    form = ServerDialog(dialog)
    qtbot.addWidget(form)
    form.host_edit.setText("pacs.example")
    form.aet_edit.setText("BAD\\AE")
    form.accept()
    assert form.result() != ServerDialog.Accepted
    assert "AE title" in form.error_label.text()


def test_main_window_retrieves_from_pacs_and_opens_the_series(qtbot, window, orthanc, tmp_path):  # noqa: F811
    """File > Retrieve from PACS...: the retrieved series opens as the case."""
    from tests.ui.conftest import wait_idle

    assert store_files(orthanc.node, [data_path("dcm_qa_ct_philips")])["stored"] == 28
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&File")
    action = window.actions_by_name["pacs"]
    assert action in file_menu.actions() and action.shortcut().toString() == "Ctrl+Shift+P"
    action.trigger()
    dlg = window.pacs_dialog
    assert dlg.isVisible()
    dlg.add_server("Test Orthanc", orthanc.node)
    dlg.id_edit.setText("PLASTIC")
    qtbot.mouseClick(dlg.search_button, Qt.LeftButton)
    _wait_idle(qtbot, dlg)
    study = dlg.tree.topLevelItem(0)
    dlg.tree.setCurrentItem(study)
    _wait_idle(qtbot, dlg)
    dlg.tree.setCurrentItem(study.child(0))
    dlg.folder_edit.setText(str(tmp_path / "pacs"))
    qtbot.mouseClick(dlg.retrieve_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.case is not None, timeout=TASK_TIMEOUT_MS)
    wait_idle(qtbot, window)
    volume = window.case.primary_volume()[1]
    assert volume.array.shape == (28, 512, 512) and not window.errors
    dlg.runner.shutdown()
