"""Segment editor dock: the label being edited, brushes and whole-label tools.

The panel only collects parameters and emits signals; ``app.ui.edit_tools``
(installed as a UI extension) runs the tools on the case through the undo
stack. Visibility and colours live in the Segmentation panel's item list;
this panel reuses it (``SegmentationPanel.set_visible``) rather than keeping
a second list.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.case import Case
from app.ui.panels import _swatch, item_color
from imaging.segment import HU_PRESETS
from imaging.segment_morphology import MORPH_OPS
from imaging.segment_tools import LOGIC_OPS

#: Mouse tools of the slice views: key, button text, shortcut, tooltip.
TOOLS = (
    ("paint", "Paint", "B", "Paint brush (B): drag in a slice view; [ and ] change the size"),
    ("erase", "Erase", "E", "Erase brush (E): drag in a slice view to remove voxels of the label"),
    ("grow", "Grow", "G", "Region growing (G): click a seed voxel; grows within the HU range below"),
    ("scissors", "Scissors 3D", "C", "Scissors (C): drag a closed outline in the 3D view; cuts through the depth"),
)
SCISSORS_MODES = {"Erase inside": ("inside", True), "Erase outside": ("outside", True), "Fill inside": ("inside", False)}
RADIUS_RANGE_MM = (0.25, 50.0)
PLANE_NORMALS = {"axial (S)": (0.0, 0.0, 1.0), "coronal (P)": (0.0, 1.0, 0.0), "sagittal (L)": (1.0, 0.0, 0.0)}


def _spin(lo: float, hi: float, value: float, step: float, suffix: str, tip: str, decimals: int = 1) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(lo, hi)
    spin.setDecimals(decimals)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setSuffix(suffix)
    spin.setToolTip(tip)
    return spin


class SegmentEditorPanel(QWidget):
    """Label choice, brush settings and editing tools.

    Signals
    -------
    tool_changed(str)
        ``"paint"``, ``"erase"``, ``"grow"`` or ``""`` (crosshair).
    new_label_requested(str)
        Create an empty label with this name.
    label_changed(str)
        The edited label.
    visibility_requested(str, bool)
        Show or hide the edited label.
    operation_requested(str, dict)
        A whole-label tool: ``"keep_largest"``, ``"remove_small"``,
        ``"morphology"``, ``"fill_holes"``, ``"logic"``, ``"split"`` with its
        parameters.
    """

    tool_changed = Signal(str)
    new_label_requested = Signal(str)
    label_changed = Signal(str)
    visibility_requested = Signal(str, bool)
    operation_requested = Signal(str, dict)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("segment_editor_panel")
        self._filling = False

        # -- label ----------------------------------------------------------
        self.label = QComboBox()
        self.label.setObjectName("edit_label")
        self.label.setToolTip("The label the tools edit")
        self.visible = QCheckBox("Show")
        self.visible.setChecked(True)
        self.visible.setToolTip("Show the label in the slice views (same as its tick in the Segmentation list)")
        self.new_name = QLineEdit()
        self.new_name.setPlaceholderText("new label name")
        self.new_button = QPushButton("New label")
        self.new_button.setToolTip("Create an empty label on the CT grid to paint into")
        label_box = QGroupBox("Label")
        grid = QGridLayout(label_box)
        grid.addWidget(self.label, 0, 0, 1, 2)
        grid.addWidget(self.visible, 0, 2)
        grid.addWidget(self.new_name, 1, 0, 1, 2)
        grid.addWidget(self.new_button, 1, 2)

        # -- mouse tools ------------------------------------------------------
        self.tool_buttons: dict[str, QToolButton] = {}
        self.tool_group = QButtonGroup(self)
        self.tool_group.setExclusive(False)  # a second click unticks: back to the crosshair
        row = QHBoxLayout()
        for key, text, shortcut, tip in TOOLS:
            button = QToolButton()
            button.setObjectName(f"tool_{key}")
            button.setText(f"{text} ({shortcut})")
            button.setCheckable(True)
            button.setToolTip(tip)
            button.setStyleSheet("QToolButton:checked { background: #3d6fb6; color: white; }")
            self.tool_group.addButton(button)
            self.tool_buttons[key] = button
            row.addWidget(button)
        self.radius = _spin(*RADIUS_RANGE_MM, 3.0, 0.5, " mm", "Brush radius in mm ([ smaller, ] larger)")
        self.sphere = QCheckBox("3D sphere")
        self.sphere.setToolTip("Paint a sphere through neighbouring slices instead of a disk in the slice")
        self.grow_preset = QComboBox()
        self.grow_preset.addItems(["Custom", *HU_PRESETS])
        self.grow_lo = _spin(-2000.0, 5000.0, HU_PRESETS["bone"][0], 10.0, " HU", "Lower HU of region growing", 0)
        self.grow_hi = _spin(-2000.0, 5000.0, HU_PRESETS["bone"][1], 10.0, " HU", "Upper HU of region growing", 0)
        self.grow_preset.setCurrentText("bone")
        self.scissors_mode = QComboBox()
        self.scissors_mode.addItems(list(SCISSORS_MODES))
        self.scissors_mode.setToolTip("What the 3D outline does to the label, through the whole depth of the view")
        tools_box = QGroupBox("Mouse tools (slice views)")
        form = QFormLayout(tools_box)
        form.addRow(row)
        brush_row = QHBoxLayout()
        brush_row.addWidget(self.radius)
        brush_row.addWidget(self.sphere)
        form.addRow("Brush radius", brush_row)
        form.addRow("Grow preset", self.grow_preset)
        hu_row = QHBoxLayout()
        hu_row.addWidget(self.grow_lo)
        hu_row.addWidget(self.grow_hi)
        form.addRow("Grow range", hu_row)
        form.addRow("Scissors", self.scissors_mode)
        hint = QLabel("Shift+click still moves the crosshair. Scissors: drag in the 3D view.")
        hint.setStyleSheet("color: #909090;")
        form.addRow(hint)

        # -- whole-label tools -----------------------------------------------
        self.keep_largest = QPushButton("Keep largest island")
        self.keep_largest.setToolTip("Remove every piece of the label but the largest (26-connected)")
        self.min_size = _spin(0.0, 1e7, 100.0, 50.0, " mm³", "Pieces smaller than this are removed", 0)
        self.remove_small = QPushButton("Remove small islands")
        self.remove_small.setToolTip("Remove the pieces of the label smaller than the size given")
        self.morph_op = QComboBox()
        self.morph_op.addItems(list(MORPH_OPS))
        self.morph_op.setToolTip("open/close/dilate/erode/margin/hollow with an exact ball in mm")
        self.morph_radius = _spin(-50.0, 50.0, 1.0, 0.5, " mm", "Ball radius (margin: negative shrinks)")
        self.morph_button = QPushButton("Apply")
        self.morph_button.setToolTip("Run the morphological operation on the label")
        self.fill_button = QPushButton("Fill holes")
        self.fill_button.setToolTip("Fill cavities enclosed by the label in 3D")
        self.logic_op = QComboBox()
        self.logic_op.addItems(list(LOGIC_OPS))
        self.logic_other = QComboBox()
        self.logic_other.setToolTip("The second label of the operation")
        self.logic_button = QPushButton("Apply")
        self.logic_button.setToolTip("Edited label := edited label (op) the other label")
        self.split_normal = QComboBox()
        self.split_normal.addItems(list(PLANE_NORMALS))
        self.split_normal.setToolTip("Cut plane through the crosshair point, normal to this axis")
        self.kerf = _spin(0.0, 10.0, 0.0, 0.5, " mm", "Saw kerf removed between the two parts")
        self.split_button = QPushButton("Split (osteotomy)")
        self.split_button.setToolTip("Cut the label by the plane into two new labels <label>_a / <label>_b")
        ops_box = QGroupBox("Label tools")
        ops = QGridLayout(ops_box)
        ops.addWidget(self.keep_largest, 0, 0, 1, 3)
        ops.addWidget(self.min_size, 1, 0, 1, 2)
        ops.addWidget(self.remove_small, 1, 2)
        ops.addWidget(self.morph_op, 2, 0)
        ops.addWidget(self.morph_radius, 2, 1)
        ops.addWidget(self.morph_button, 2, 2)
        ops.addWidget(self.fill_button, 3, 0, 1, 3)
        ops.addWidget(self.logic_op, 4, 0)
        ops.addWidget(self.logic_other, 4, 1)
        ops.addWidget(self.logic_button, 4, 2)
        ops.addWidget(self.split_normal, 5, 0)
        ops.addWidget(self.kerf, 5, 1)
        ops.addWidget(self.split_button, 5, 2)

        self.info = QLabel("")
        self.info.setObjectName("edit_info")
        self.info.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(label_box)
        layout.addWidget(tools_box)
        layout.addWidget(ops_box)
        layout.addWidget(self.info)
        layout.addStretch(1)

        self.tool_group.buttonToggled.connect(self._on_tool_toggled)
        self.new_button.clicked.connect(self._request_new)
        self.new_name.returnPressed.connect(self._request_new)
        self.label.currentTextChanged.connect(self._on_label)
        self.visible.toggled.connect(lambda on: self.label.currentText() and self.visibility_requested.emit(
            self.label.currentText(), on))
        self.grow_preset.currentTextChanged.connect(self._on_grow_preset)
        self.keep_largest.clicked.connect(lambda: self.operation_requested.emit("keep_largest", {}))
        self.remove_small.clicked.connect(lambda: self.operation_requested.emit(
            "remove_small", {"min_size_mm3": self.min_size.value()}))
        self.morph_button.clicked.connect(lambda: self.operation_requested.emit(
            "morphology", {"op": self.morph_op.currentText(), "radius_mm": self.morph_radius.value()}))
        self.fill_button.clicked.connect(lambda: self.operation_requested.emit("fill_holes", {}))
        self.logic_button.clicked.connect(lambda: self.operation_requested.emit(
            "logic", {"op": self.logic_op.currentText(), "other": self.logic_other.currentText()}))
        self.split_button.clicked.connect(lambda: self.operation_requested.emit(
            "split", {"normal_lps": PLANE_NORMALS[self.split_normal.currentText()], "kerf_mm": self.kerf.value()}))
        self.set_case(None)

    # -- state ----------------------------------------------------------------
    def current_label(self) -> str:
        return self.label.currentText()

    def current_tool(self) -> str:
        return next((key for key, b in self.tool_buttons.items() if b.isChecked()), "")

    def set_tool(self, key: str) -> None:
        """Tick one tool (``""``: none); emits ``tool_changed``."""
        for name, button in self.tool_buttons.items():
            if button.isChecked() != (name == key):
                button.setChecked(name == key)

    def grow_range(self) -> tuple[float, float]:
        return self.grow_lo.value(), self.grow_hi.value()

    def set_case(self, case: Optional[Case], visible=lambda name: True) -> None:
        """Refill the label choices (keeps the current one when it still exists)."""
        self._filling = True
        current, other = self.label.currentText(), self.logic_other.currentText()
        self.label.clear()
        self.logic_other.clear()
        names = [] if case is None else list(case.labels)
        for i, name in enumerate(names):
            self.label.addItem(_swatch(item_color(case, "label", name, i)), name)
            self.logic_other.addItem(name)
        if current in names:
            self.label.setCurrentText(current)
        if other in names:
            self.logic_other.setCurrentText(other)
        self._filling = False
        has_volume = case is not None and bool(case.volumes)
        self.new_button.setEnabled(has_volume)
        for widget in (self.keep_largest, self.remove_small, self.morph_button, self.fill_button,
                       self.logic_button, self.split_button):
            widget.setEnabled(bool(names))
        name = self.label.currentText()
        self.visible.blockSignals(True)
        self.visible.setChecked(bool(name) and visible(name))
        self.visible.blockSignals(False)

    # -- slots ----------------------------------------------------------------
    def _on_tool_toggled(self, button, checked: bool) -> None:
        if checked:  # exclusive, but a ticked tool may be unticked
            for other in self.tool_buttons.values():
                if other is not button and other.isChecked():
                    other.blockSignals(True)
                    other.setChecked(False)
                    other.blockSignals(False)
        self.tool_changed.emit(self.current_tool())

    def _request_new(self) -> None:
        name = self.new_name.text().strip()
        if name:
            self.new_label_requested.emit(name)

    def _on_label(self, name: str) -> None:
        if not self._filling and name:
            self.label_changed.emit(name)

    def _on_grow_preset(self, name: str) -> None:
        if name in HU_PRESETS:
            self.grow_lo.setValue(HU_PRESETS[name][0])
            self.grow_hi.setValue(HU_PRESETS[name][1])

    def keyPressEvent(self, event) -> None:  # noqa: N802
        # Return in a spin box must not trigger a default button of the dock.
        if event.key() in (Qt.Key_Return, Qt.Key_Enter):
            event.accept()
            return
        super().keyPressEvent(event)
