"""Dock panels: segmentation (threshold, mesh, item list) and 3D rendering.

Panels only collect parameters and emit signals; the main window runs the
pipeline steps.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHeaderView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.case import Case
from imaging.segment import HU_PRESETS
from imaging.volume import default_color
from viewer.scene3d import CAMERA_VIEWS
from viewer.volume_presets import VOLUME_PRESETS

HU_MIN, HU_MAX = -2000.0, 5000.0
_CUSTOM = "Custom"


def _swatch(color) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(QColor.fromRgbF(*color))
    return QIcon(pix)


def item_color(case: Case, kind: str, name: str, index: int = 0) -> tuple[float, float, float]:
    """Display colour of a label or surface: the label table's, else a default."""
    label = case.labels.get(name)
    if label is not None and label.labels:
        return tuple(next(iter(label.labels.values())).color)
    return default_color(name, index)


class SegmentationPanel(QWidget):
    """Threshold segmentation, surface building and the list of labels/surfaces.

    Signals
    -------
    preview_changed(object)
        (lo, hi) HU to preview, or None when the preview is off.
    segment_requested(str, float, float)
        Label name, lower and upper threshold (HU).
    mesh_requested(str, int, float)
        Label name, smoothing iterations, decimation fraction.
    visibility_changed(str, str, bool)
        Kind ("label"/"surface"), name, visible.
    """

    preview_changed = Signal(object)
    segment_requested = Signal(str, float, float)
    mesh_requested = Signal(str, int, float)
    visibility_changed = Signal(str, str, bool)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("segmentation_panel")
        self._hidden: set[tuple[str, str]] = set()
        self._filling = False
        self.presets: dict[str, tuple[float, float]] = dict(HU_PRESETS)

        self.label_name = QLineEdit("bone")
        self.label_name.setToolTip("Name of the label to create or replace")
        self.preset = QComboBox()
        self.preset.addItems([_CUSTOM, *HU_PRESETS])
        self.lower = self._hu_spin(HU_PRESETS["bone"][0])
        self.upper = self._hu_spin(HU_PRESETS["bone"][1])
        self.preview = QCheckBox("Live threshold preview")
        self.preview.setToolTip("Overlay the voxels in range on the slices (turns on while you edit)")
        self.segment_button = QPushButton("Segment")
        self.segment_button.setToolTip("Threshold the CT into the label (largest component, holes filled)")
        self.preset.setCurrentText("bone")

        seg_box = QGroupBox("Threshold")
        form = QFormLayout(seg_box)
        form.addRow("Label", self.label_name)
        form.addRow("Preset", self.preset)
        self.lower_label, self.upper_label = QLabel("Lower (HU)"), QLabel("Upper (HU)")
        form.addRow(self.lower_label, self.lower)
        form.addRow(self.upper_label, self.upper)
        form.addRow(self.preview)
        form.addRow(self.segment_button)

        self.mesh_label = QComboBox()
        self.smoothing = QSpinBox()
        self.smoothing.setRange(0, 200)
        self.smoothing.setValue(20)
        self.smoothing.setToolTip("Windowed-sinc smoothing iterations (0: none)")
        self.decimate = QDoubleSpinBox()
        self.decimate.setRange(0.0, 0.95)
        self.decimate.setSingleStep(0.05)
        self.decimate.setValue(0.5)
        self.decimate.setToolTip("Fraction of triangles to remove (0: keep all)")
        self.mesh_button = QPushButton("Build mesh")
        mesh_box = QGroupBox("Surface")
        mesh_form = QFormLayout(mesh_box)
        mesh_form.addRow("Label", self.mesh_label)
        mesh_form.addRow("Smoothing", self.smoothing)
        mesh_form.addRow("Decimate", self.decimate)
        mesh_form.addRow(self.mesh_button)

        self.items = QTreeWidget()
        self.items.setObjectName("case_items")
        self.items.setHeaderLabels(["Item", "Size"])
        self.items.setRootIsDecorated(True)
        self.items.header().setStretchLastSection(False)
        self.items.header().setSectionResizeMode(0, QHeaderView.Stretch)
        self.items.header().setSectionResizeMode(1, QHeaderView.ResizeToContents)
        self.items.setMinimumHeight(120)
        items_box = QGroupBox("Labels and surfaces")
        QVBoxLayout(items_box).addWidget(self.items)

        layout = QVBoxLayout(self)
        layout.addWidget(seg_box)
        layout.addWidget(mesh_box)
        layout.addWidget(items_box, 1)

        self.preset.currentTextChanged.connect(self._on_preset)
        self.lower.valueChanged.connect(self._on_range_edited)
        self.upper.valueChanged.connect(self._on_range_edited)
        self.preview.toggled.connect(lambda _on: self.preview_changed.emit(self.preview_range()))
        self.segment_button.clicked.connect(self._request_segment)
        self.mesh_button.clicked.connect(self._request_mesh)
        self.items.itemChanged.connect(self._on_item_changed)
        self.items.itemClicked.connect(self._on_item_clicked)
        self.set_case(None)

    @staticmethod
    def _hu_spin(value: float) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(HU_MIN, HU_MAX)
        spin.setDecimals(0)
        spin.setSingleStep(10)
        spin.setKeyboardTracking(True)
        spin.setValue(value)
        return spin

    # -- threshold -----------------------------------------------------------
    def preview_range(self) -> Optional[tuple[float, float]]:
        """Range to preview, or None when the preview is off."""
        if not self.preview.isChecked():
            return None
        return (self.lower.value(), self.upper.value())

    def set_range(self, lo: float, hi: float) -> None:
        """Set the threshold range, HU (emits ``preview_changed``)."""
        self.lower.setValue(lo)
        self.upper.setValue(hi)

    def set_presets(self, presets: dict[str, tuple[float, float]], units: str = "HU") -> None:
        """Threshold presets that suit the scan (``imaging.segment.presets_for``).

        Cone-beam CT grey values are not HU: its presets come from the image and
        the range is labelled in grey values. The chosen preset keeps its name
        and takes its new range; the preview is not switched on by this.
        """
        self.presets = dict(presets)
        current = self.preset.currentText()
        lo_all = min([HU_MIN, *(lo for lo, _ in presets.values())])
        hi_all = max([HU_MAX, *(hi for _, hi in presets.values())])
        for spin in (self.lower, self.upper):
            spin.setRange(lo_all, hi_all)
        self.lower_label.setText(f"Lower ({units})")
        self.upper_label.setText(f"Upper ({units})")
        self.preset.blockSignals(True)
        self.preset.clear()
        self.preset.addItems([_CUSTOM, *presets])
        self.preset.setCurrentText(current if current in presets else _CUSTOM)
        self.preset.blockSignals(False)
        if current in presets:
            self._filling = True
            self.set_range(*presets[current])
            self._filling = False
            if self.preview.isChecked():
                self.preview_changed.emit(self.preview_range())

    def _on_preset(self, name: str) -> None:
        if name == _CUSTOM:
            return
        lo, hi = self.presets[name]
        self._filling = True
        self.set_range(lo, hi)
        self._filling = False
        if not self.label_name.text().strip() or self.label_name.text() in self.presets:
            self.label_name.setText(name)
        self._show_preview()

    def _on_range_edited(self) -> None:
        if self._filling:
            return
        preset = self.preset.currentText()
        if preset != _CUSTOM and self.presets[preset] != (self.lower.value(), self.upper.value()):
            self.preset.blockSignals(True)
            self.preset.setCurrentText(_CUSTOM)
            self.preset.blockSignals(False)
        self._show_preview()

    def _show_preview(self) -> None:
        """The range is being edited: turn the preview on (or refresh it)."""
        if self.preview.isChecked():
            self.preview_changed.emit(self.preview_range())
        else:
            self.preview.setChecked(True)  # emits through ``toggled``

    def _request_segment(self) -> None:
        self.segment_requested.emit(self.label_name.text().strip(), self.lower.value(), self.upper.value())

    def _request_mesh(self) -> None:
        self.mesh_requested.emit(self.mesh_label.currentText(), self.smoothing.value(), self.decimate.value())

    # -- items ---------------------------------------------------------------
    def set_case(self, case: Optional[Case]) -> None:
        """Rebuild the item list and the mesh label choice from a case."""
        has_volume = case is not None and bool(case.volumes)
        self.segment_button.setEnabled(has_volume)
        current = self.mesh_label.currentText()
        self.mesh_label.clear()
        self.items.blockSignals(True)
        self.items.clear()
        if case is not None:
            labels_node = QTreeWidgetItem(self.items, ["Labels", ""])
            for i, (name, lab) in enumerate(case.labels.items()):
                sx, sy, sz = lab.geometry.spacing_xyz
                ml = lab.voxel_count(1) * sx * sy * sz / 1000.0
                self._add_item(labels_node, "label", name, item_color(case, "label", name, i), f"{ml:.1f} mL")
            surfaces_node = QTreeWidgetItem(self.items, ["Surfaces", ""])
            for i, (name, surf) in enumerate(case.surfaces.items()):
                self._add_item(surfaces_node, "surface", name, item_color(case, "surface", name, i),
                               f"{surf.n_cells:,} tri")
            self.items.expandAll()
            self.mesh_label.addItems(list(case.labels))
            if current in case.labels:
                self.mesh_label.setCurrentText(current)
            elif case.labels:
                self.mesh_label.setCurrentIndex(self.mesh_label.count() - 1)
        self.items.blockSignals(False)
        self.mesh_button.setEnabled(self.mesh_label.count() > 0)

    def _add_item(self, parent: QTreeWidgetItem, kind: str, name: str, color, size: str) -> None:
        item = QTreeWidgetItem(parent, [name, size])
        item.setIcon(0, _swatch(color))
        item.setData(0, Qt.UserRole, (kind, name))
        item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
        item.setCheckState(0, Qt.Unchecked if (kind, name) in self._hidden else Qt.Checked)

    def is_visible(self, kind: str, name: str) -> bool:
        return (kind, name) not in self._hidden

    def set_visible(self, kind: str, name: str, visible: bool) -> None:
        """Tick or untick an item (emits ``visibility_changed`` if it changes)."""
        for i in range(self.items.topLevelItemCount()):
            node = self.items.topLevelItem(i)
            for j in range(node.childCount()):
                item = node.child(j)
                if item.data(0, Qt.UserRole) == (kind, name):
                    item.setCheckState(0, Qt.Checked if visible else Qt.Unchecked)

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        key = item.data(0, Qt.UserRole)
        if not key:
            return
        visible = item.checkState(0) == Qt.Checked
        if visible == (key not in self._hidden):
            return
        (self._hidden.discard if visible else self._hidden.add)(key)
        self.visibility_changed.emit(key[0], key[1], visible)

    def _on_item_clicked(self, item: QTreeWidgetItem, column: int) -> None:
        key = item.data(0, Qt.UserRole)
        if key and key[0] == "label":
            self.mesh_label.setCurrentText(key[1])

    def forget_visibility(self) -> None:
        """Show everything again (a new case was opened)."""
        self._hidden.clear()


class RenderingPanel(QWidget):
    """Volume rendering (preset, HU shift, opacity), slice planes and camera.

    Signals
    -------
    volume_rendering_changed(bool, str, float, float)
        Enabled, preset, shift (HU), opacity scale.
    slices_toggled(bool)
        Show the slice planes in 3D.
    camera_requested(str)
        A key of ``CAMERA_VIEWS``.
    """

    volume_rendering_changed = Signal(bool, str, float, float)
    slices_toggled = Signal(bool)
    camera_requested = Signal(str)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("rendering_panel")
        self.enabled = QCheckBox("Volume rendering")
        self.preset = QComboBox()
        self.preset.addItems(list(VOLUME_PRESETS))
        self.shift = QSlider(Qt.Horizontal)
        self.shift.setRange(-500, 500)
        self.shift.setSingleStep(10)
        self.shift.setPageStep(50)
        self.shift_label = QLabel("0 HU")
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 200)
        self.opacity.setValue(100)
        self.opacity_label = QLabel("100 %")
        for label in (self.shift_label, self.opacity_label):
            label.setMinimumWidth(56)
        self.slices = QCheckBox("Slice planes in 3D")
        self.slices.setChecked(True)

        vr_box = QGroupBox("Volume rendering")
        grid = QGridLayout(vr_box)
        grid.addWidget(self.enabled, 0, 0, 1, 3)
        grid.addWidget(QLabel("Preset"), 1, 0)
        grid.addWidget(self.preset, 1, 1, 1, 2)
        grid.addWidget(QLabel("Shift"), 2, 0)
        grid.addWidget(self.shift, 2, 1)
        grid.addWidget(self.shift_label, 2, 2)
        grid.addWidget(QLabel("Opacity"), 3, 0)
        grid.addWidget(self.opacity, 3, 1)
        grid.addWidget(self.opacity_label, 3, 2)

        cam_box = QGroupBox("View")
        cam = QGridLayout(cam_box)
        cam.addWidget(self.slices, 0, 0, 1, 3)
        for n, direction in enumerate(CAMERA_VIEWS):
            button = QPushButton(direction.capitalize())
            button.setObjectName(f"camera_{direction}")
            button.clicked.connect(lambda _=False, d=direction: self.camera_requested.emit(d))
            cam.addWidget(button, 1 + n // 3, n % 3)

        layout = QVBoxLayout(self)
        layout.addWidget(vr_box)
        layout.addWidget(cam_box)
        layout.addStretch(1)

        self.enabled.toggled.connect(self._emit)
        self.preset.currentTextChanged.connect(self._emit)
        self.shift.valueChanged.connect(self._emit)
        self.opacity.valueChanged.connect(self._emit)
        self.slices.toggled.connect(self.slices_toggled)

    def settings(self) -> tuple[bool, str, float, float]:
        """(enabled, preset, shift HU, opacity scale) as set in the panel."""
        return (self.enabled.isChecked(), self.preset.currentText(),
                float(self.shift.value()), self.opacity.value() / 100.0)

    def _emit(self, *_args) -> None:
        enabled, preset, shift, scale = self.settings()
        self.shift_label.setText(f"{shift:+.0f} HU")
        self.opacity_label.setText(f"{scale * 100:.0f} %")
        self.volume_rendering_changed.emit(enabled, preset, shift, scale)


def labelled_row(text: str, widget: QWidget) -> QWidget:
    """A small 'label: widget' row for toolbars."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(4, 0, 4, 0)
    layout.addWidget(QLabel(text))
    layout.addWidget(widget)
    return row
