"""What the user must know about a scan after import: its kind and its warnings.

Gantry tilt, uneven or resampled slices, a derived series UID, cone-beam grey
values, an assumed orientation: each changes how far the geometry or the
thresholds can be trusted. They appear in a non-modal box (the work goes on)
and stay reachable from the status bar after it is closed.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from imaging.volume import Volume

#: Status-bar text and tooltip per ``Volume.kind``.
KIND_TEXT = {
    "ct": ("CT", "Calibrated CT: grey values are Hounsfield units"),
    "cbct": ("CBCT", "Dental cone-beam CT: grey values are not Hounsfield units; "
                     "the threshold presets come from this image"),
}


def scan_kind(volume: Optional[Volume]) -> tuple[str, str]:
    """(short text, tooltip) naming the kind of scan, e.g. ("CBCT", "...")."""
    if volume is None:
        return "", ""
    key = volume.kind or (volume.modality or "").lower()
    if key in KIND_TEXT:
        return KIND_TEXT[key]
    text = (volume.kind or volume.modality or "unknown").upper()
    return text, f"Scan kind: {text}"


class ImportWarningsDialog(QDialog):
    """Non-modal list of the warnings of the scan just imported."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("import_warnings")
        self.setWindowTitle("Import warnings")
        self.setModal(False)
        self.setMinimumWidth(560)
        icon = QLabel()
        icon.setPixmap(self.style().standardIcon(QStyle.SP_MessageBoxWarning).pixmap(32, 32))
        icon.setAlignment(Qt.AlignTop)
        self.heading = QLabel("")
        self.heading.setWordWrap(True)
        self.list = QListWidget()
        self.list.setWordWrap(True)
        self.list.setSelectionMode(QListWidget.NoSelection)
        self.list.setFocusPolicy(Qt.NoFocus)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        buttons.accepted.connect(self.close)
        top = QHBoxLayout()
        top.addWidget(icon)
        top.addWidget(self.heading, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.list, 1)
        layout.addWidget(buttons)

    def set_warnings(self, source: str, kind: str, warnings: list[str]) -> None:
        """Fill the box for the scan ``source`` (a file or folder name)."""
        n = len(warnings)
        self.heading.setText(f"<b>{source}</b> ({kind}) was imported with {n} warning{'s' if n != 1 else ''}. "
                             "Check the geometry and thresholds before planning.")
        self.list.clear()
        for warning in warnings:
            QListWidgetItem(f"\u2022 {warning}", self.list)
        self.resize(self.width(), min(520, 140 + 46 * n))

    def warnings(self) -> list[str]:
        """The warnings shown, without the bullets."""
        return [self.list.item(i).text().lstrip("\u2022 ") for i in range(self.list.count())]


class ScanStatus(QWidget):
    """Status-bar part: the scan kind and a button reopening the warnings box.

    Signals
    -------
    warnings_requested()
        The user wants to see the warnings again.
    """

    warnings_requested = Signal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.kind_label = QLabel("")
        self.kind_label.setObjectName("scan_kind")
        self.kind_label.setStyleSheet("QLabel { padding: 0 6px; border: 1px solid #5a5d66; border-radius: 3px; }")
        self.warnings_button = QToolButton()
        self.warnings_button.setObjectName("import_warnings_button")
        self.warnings_button.setIcon(self.style().standardIcon(QStyle.SP_MessageBoxWarning))
        self.warnings_button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.warnings_button.setAutoRaise(True)
        self.warnings_button.setToolTip("Show the import warnings again")
        self.warnings_button.clicked.connect(self.warnings_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.kind_label)
        layout.addWidget(self.warnings_button)
        self.set_scan(None, 0)

    def set_scan(self, volume: Optional[Volume], n_warnings: int) -> None:
        text, tip = scan_kind(volume)
        self.kind_label.setText(text)
        self.kind_label.setToolTip(tip)
        self.kind_label.setVisible(bool(text))
        self.warnings_button.setText(f"{n_warnings} import warning{'s' if n_warnings != 1 else ''}")
        self.warnings_button.setVisible(n_warnings > 0)
