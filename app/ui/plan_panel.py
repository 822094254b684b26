"""Soft-tissue plan dock: which segment moves, the live move, the predicted skin.

The panel only collects parameters and shows results; the main window
(``PlanActionsMixin``) prepares the live prediction on the worker, updates it
on every move and applies it to the case.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QToolBox,
    QVBoxLayout,
    QWidget,
)

from app.case import Case
from app.plan import DEFAULT_POISSON, TissuePlan

#: The six move fields: name, unit, limit, what a positive value does (LPS).
MOVE_FIELDS = (
    ("tx", "mm", 20.0, "L+", "Translation along x: + toward the patient's left"),
    ("ty", "mm", 20.0, "P+", "Translation along y: + posterior, - anterior (advancement)"),
    ("tz", "mm", 20.0, "S+", "Translation along z: + superior (impaction is -)"),
    ("rx", "deg", 20.0, "pitch", "Rotation about the left-right axis, about the segment centre"),
    ("ry", "deg", 20.0, "roll", "Rotation about the antero-posterior axis, about the segment centre"),
    ("rz", "deg", 20.0, "yaw", "Rotation about the supero-inferior axis, about the segment centre"),
)
SLIDER_STEPS_PER_UNIT = 10  # sliders move in 0.1 mm / 0.1 deg
DEFAULT_ELEMENT_MM = 6.0  # coarser than the CLI's 4 mm: the GUI favours a quick preparation
LANDMARK_NAMES = {"pronasale": "Nose tip", "soft_tissue_over_segment": "Over segment"}
VIEW_MODES = {"Predicted (after)": "after", "Original (before)": "before",
              "Before | after (side by side)": "side", "Distance to original skin": "distance",
              "Linear | neo-Hookean (difference)": "compare"}


class PlanPanel(QWidget):
    """Set up, drive and apply a soft-tissue prediction.

    Signals
    -------
    prepare_requested()
        Prepare (or, while preparing, cancel) the live prediction.
    move_changed(object)
        The move as (tx, ty, tz, rx, ry, rz), mm and degrees.
    view_changed(str, float)
        View mode (``after``/``before``) and skin opacity 0..1.
    smooth_toggled(bool)
        Draw the skin smoothed or as the FE element staircase.
    refine_requested(), apply_requested()
        Run the neo-Hookean check; store the prediction in the case.
    """

    prepare_requested = Signal()
    move_changed = Signal(object)
    view_changed = Signal(str, float)
    smooth_toggled = Signal(bool)
    refine_requested = Signal()
    apply_requested = Signal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("plan_panel")
        self._fixed_state: dict[str, bool] = {}
        self._preparing = False
        self._filling = False
        self._prepared: Optional[tuple[TissuePlan, str]] = None  # plan and its description, once ready

        self.segment = QComboBox()
        self.segment.setToolTip("The bone label the surgeon moves (e.g. a Le Fort I maxilla)")
        self.fixed = QListWidget()
        self.fixed.setObjectName("plan_fixed_labels")
        self.fixed.setToolTip("Bone that stays put: soft tissue attached to it does not move")
        self.fixed.setSelectionMode(QAbstractItemView.NoSelection)
        self.fixed.setMaximumHeight(74)
        self.skin = QComboBox()
        self.skin.setEditable(True)
        self.skin.setToolTip("Label of everything inside the skin; segmented with the skin preset if missing")
        self.element_mm = self._spin(2.0, 12.0, DEFAULT_ELEMENT_MM, 1.0, 0, " mm")
        self.element_mm.setToolTip("Tetrahedral element size: smaller is finer and slower to prepare")
        self.poisson = self._spin(0.0, 0.49, DEFAULT_POISSON, 0.01, 2, "")
        self.poisson.setToolTip("Poisson's ratio of the soft tissue (0.45-0.49: nearly incompressible)")
        self.setup_info = QLabel("")
        self.setup_info.setWordWrap(True)
        self.setup_info.setObjectName("plan_setup_info")
        self.prepare_button = QPushButton("Prepare live prediction")
        self.prepare_button.setToolTip("Mesh the soft tissue and solve the 12 unit responses (worker; Esc cancels)")

        setup_page = QWidget()
        setup = QVBoxLayout(setup_page)
        form = QFormLayout()
        form.addRow("Moved segment", self.segment)
        form.addRow("Fixed bone", self.fixed)
        form.addRow("Skin label", self.skin)
        material = QHBoxLayout()
        material.addWidget(self.element_mm)
        material.addWidget(QLabel("Poisson"))
        material.addWidget(self.poisson)
        form.addRow("Elements", material)
        setup.addLayout(form)
        setup.addWidget(self.setup_info)
        setup.addWidget(self.prepare_button)
        setup.addStretch(1)

        self.move_spins: dict[str, QDoubleSpinBox] = {}
        self.move_sliders: dict[str, QSlider] = {}
        self.move_box = QGroupBox("Move segment")
        self.move_box.setToolTip("LPS: +x toward the patient's left, +y posterior, +z superior; "
                                 "rotations about the segment centre. Or drag the box in the 3D view: its centre "
                                 "sphere translates, its faces rotate")
        grid = QGridLayout(self.move_box)
        grid.setColumnStretch(1, 1)
        grid.setVerticalSpacing(2)
        for row, (name, unit, limit, sense, tip) in enumerate(MOVE_FIELDS):
            spin = self._spin(-limit, limit, 0.0, 0.5 if unit == "mm" else 1.0, 1, f" {unit}")
            spin.setObjectName(f"move_{name}")
            slider = QSlider(Qt.Horizontal)
            slider.setRange(int(-limit * SLIDER_STEPS_PER_UNIT), int(limit * SLIDER_STEPS_PER_UNIT))
            slider.setPageStep(SLIDER_STEPS_PER_UNIT)
            label = QLabel(f"{name} <span style='color:#9a9da6'>{sense}</span>")
            for widget in (label, spin, slider):
                widget.setToolTip(tip)
            grid.addWidget(label, row, 0)
            grid.addWidget(slider, row, 1)
            grid.addWidget(spin, row, 2)
            spin.valueChanged.connect(lambda value, n=name: self._on_spin(n, value))
            slider.valueChanged.connect(lambda value, n=name: self._on_slider(n, value))
            self.move_spins[name] = spin
            self.move_sliders[name] = slider
        self.reset_button = QPushButton("Reset move")
        grid.addWidget(self.reset_button, len(MOVE_FIELDS), 0, 1, 3)

        self.max_label = QLabel("Max skin displacement: -")
        self.max_label.setObjectName("plan_max_displacement")
        self.landmarks = QTableWidget(0, 5)
        self.landmarks.setObjectName("plan_landmarks")
        self.landmarks.setHorizontalHeaderLabels(["Landmark", "dx", "dy", "dz", "|d| mm"])
        self.landmarks.horizontalHeaderItem(2).setToolTip("- anterior, + posterior (LPS)")
        self.landmarks.verticalHeader().hide()
        self.landmarks.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.landmarks.setSelectionMode(QAbstractItemView.NoSelection)
        self.landmarks.setFrameShape(QFrame.NoFrame)
        header = self.landmarks.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        self.landmarks.setWordWrap(False)
        for col in range(1, 5):
            header.setSectionResizeMode(col, QHeaderView.ResizeToContents)
        self.landmarks.setFixedHeight(3 * self.landmarks.verticalHeader().defaultSectionSize() + 4)
        self.view_mode = QComboBox()
        self.view_mode.addItems(list(VIEW_MODES))
        self.view_mode.setToolTip("After, before, both side by side (one camera), the signed distance to the "
                                  "original skin, or linear next to neo-Hookean coloured by their difference")
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(10, 100)
        self.opacity.setValue(100)
        self.opacity.setToolTip("Skin opacity: lower it to see the moved segment under the skin")
        self.smooth = QCheckBox("Smooth")
        self.smooth.setChecked(True)
        self.smooth.setToolTip("Draw the skin smoothed; off: the FE element staircase. "
                               "Colours, numbers and Apply use the FE values either way")
        self.refine_button = QPushButton("Refine (neo-Hookean)")
        self.refine_button.setToolTip("Full nonlinear solve for this move (worker, tens of seconds); "
                                      "shows how far the linear prediction is from it")
        self.refine_on_release = QCheckBox("Refine on release")
        self.refine_on_release.setChecked(True)
        self.refine_on_release.setToolTip("After dragging the 3D gizmo, run the neo-Hookean solve for the new "
                                          "place in the background; view 'Linear | neo-Hookean' compares them")
        self.refine_info = QLabel("")
        self.refine_info.setObjectName("plan_refine_info")
        self.refine_info.setWordWrap(True)
        self.apply_button = QPushButton("Apply (linear)")
        self.apply_button.setToolTip("Store the predicted skin in the case (undoable)")

        self.result_box = QGroupBox("Predicted skin")
        result = QVBoxLayout(self.result_box)
        result.addWidget(self.max_label)
        result.addWidget(self.landmarks)
        view_row = QHBoxLayout()
        view_row.addWidget(self.view_mode, 1)
        view_row.addWidget(self.smooth)
        result.addLayout(view_row)
        opacity_row = QHBoxLayout()
        opacity_row.addWidget(QLabel("Skin opacity"))
        opacity_row.addWidget(self.opacity, 1)
        result.addLayout(opacity_row)
        result.addWidget(self.refine_info)
        result.addWidget(self.refine_on_release)
        buttons = QHBoxLayout()
        buttons.addWidget(self.refine_button)
        buttons.addWidget(self.apply_button)
        result.addLayout(buttons)

        live_page = QWidget()
        column = QVBoxLayout(live_page)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.move_box)
        column.addWidget(self.result_box)
        column.addStretch(1)
        # Setup is done once, moving many times: one page at a time saves the dock's height.
        self.pages = QToolBox()
        self.pages.addItem(self._scrolled(setup_page), "1  Setup")
        self.pages.addItem(self._scrolled(live_page), "2  Move and predict")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.addWidget(self.pages)

        self.prepare_button.clicked.connect(self.prepare_requested)
        self.reset_button.clicked.connect(self.reset_move)
        self.refine_button.clicked.connect(self.refine_requested)
        self.apply_button.clicked.connect(self.apply_requested)
        self.view_mode.currentTextChanged.connect(self._emit_view)
        self.opacity.valueChanged.connect(self._emit_view)
        self.smooth.toggled.connect(self.smooth_toggled)
        self.segment.currentTextChanged.connect(self._on_segment)
        self.skin.currentTextChanged.connect(self._update_setup_info)
        self.fixed.itemChanged.connect(self._on_fixed_changed)
        self.element_mm.valueChanged.connect(self._update_setup_info)
        self.poisson.valueChanged.connect(self._update_setup_info)
        self.set_case(None)
        self.set_ready(None)

    @staticmethod
    def _scrolled(page: QWidget) -> QScrollArea:
        scroll = QScrollArea()
        scroll.setWidget(page)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        return scroll

    @staticmethod
    def _spin(lo: float, hi: float, value: float, step: float, decimals: int, suffix: str) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(lo, hi)
        spin.setDecimals(decimals)
        spin.setSingleStep(step)
        spin.setSuffix(suffix)
        spin.setKeyboardTracking(True)
        spin.setValue(value)
        return spin

    # -- setup ---------------------------------------------------------------
    def set_case(self, case: Optional[Case]) -> None:
        """Offer the labels of ``case`` (keeps the choices that still exist)."""
        names = [] if case is None else list(case.labels)
        self._filling = True
        segment, skin = self.segment.currentText(), self.skin.currentText() or "skin"
        self.segment.clear()
        self.segment.addItems(names)
        if segment in names:
            self.segment.setCurrentText(segment)
        else:
            others = [n for n in names if n not in ("bone", "skin")]
            if others:
                self.segment.setCurrentText(others[-1])
        self.skin.clear()
        self.skin.addItems(names)
        self.skin.setCurrentText(skin)
        self.fixed.clear()
        for name in names:
            item = QListWidgetItem(name, self.fixed)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
        self._filling = False
        self._on_segment(self.segment.currentText())
        self.prepare_button.setEnabled(bool(names) or self._preparing)

    def _on_segment(self, segment: str) -> None:
        """Tick the fixed bones: the user's choices, else "bone"; never the segment itself."""
        if self._filling:
            return
        self._filling = True
        for i in range(self.fixed.count()):
            item = self.fixed.item(i)
            name = item.text()
            checked = self._fixed_state.get(name, name == "bone") and name != segment
            item.setCheckState(Qt.Checked if checked else Qt.Unchecked)
            flags = item.flags() | Qt.ItemIsEnabled
            item.setFlags(flags if name != segment else flags & ~Qt.ItemIsEnabled)
        self._filling = False
        self._update_setup_info()

    def _on_fixed_changed(self, item: QListWidgetItem) -> None:
        if not self._filling:
            self._fixed_state[item.text()] = item.checkState() == Qt.Checked
            self._update_setup_info()

    def set_fixed(self, names: list[str]) -> None:
        """Tick exactly ``names`` in the fixed list."""
        for i in range(self.fixed.count()):
            item = self.fixed.item(i)
            item.setCheckState(Qt.Checked if item.text() in names else Qt.Unchecked)

    def fixed_labels(self) -> list[str]:
        return [self.fixed.item(i).text() for i in range(self.fixed.count())
                if self.fixed.item(i).checkState() == Qt.Checked
                and self.fixed.item(i).text() != self.segment.currentText()]

    def _update_setup_info(self, *_args) -> None:
        if self._preparing or self._filling:
            return
        if self._prepared is not None:
            plan, info = self._prepared
            stale = "" if self.tissue_plan() == plan else " Setup changed: prepare again to use it."
            self.setup_info.setText(info + stale)
            return
        skin = self.skin.currentText().strip()
        labels = [self.skin.itemText(i) for i in range(self.skin.count())]
        if skin and skin not in labels:
            self.setup_info.setText(f"No label {skin!r}: preparing segments it with the skin preset.")
        else:
            self.setup_info.setText("")

    def tissue_plan(self) -> TissuePlan:
        """The setup as a plan (linear model; the move is filled in later)."""
        return TissuePlan(segment=self.segment.currentText(), move=None, fixed=self.fixed_labels(),
                          skin=self.skin.currentText().strip() or "skin", model="linear",
                          voxel_mm=self.element_mm.value(), poisson_ratio=self.poisson.value())

    def set_preparing(self, preparing: bool) -> None:
        """While the worker prepares, the button cancels it."""
        self._preparing = preparing
        self.prepare_button.setText("Cancel preparation" if preparing else "Prepare live prediction")
        self.prepare_button.setEnabled(preparing or self.segment.count() > 0)
        if preparing:
            self.setup_info.setText("Preparing: meshing the soft tissue, then 12 unit solves...")

    @property
    def preparing(self) -> bool:
        return self._preparing

    def set_ready(self, plan: Optional[TissuePlan], info: str = "") -> None:
        """The live prediction for ``plan`` is ready (``info`` describes it), or gone (None)."""
        ready = plan is not None
        self._prepared = (plan, info) if ready else None
        self.move_box.setEnabled(ready)
        self.result_box.setEnabled(ready)
        self.pages.setItemEnabled(1, ready)
        self.pages.setCurrentIndex(1 if ready else 0)
        self._update_setup_info()
        if not ready:
            self.max_label.setText("Max skin displacement: -")
            self.landmarks.setRowCount(0)
            self.refine_info.setText("")

    # -- move ----------------------------------------------------------------
    def move_values(self) -> tuple[float, ...]:
        """(tx, ty, tz, rx, ry, rz): mm and degrees."""
        return tuple(self.move_spins[name].value() for name, *_ in MOVE_FIELDS)

    def set_move(self, **values: float) -> None:
        """Set some of tx..rz (emits ``move_changed`` once)."""
        self._filling = True
        for name, value in values.items():
            self.move_spins[name].setValue(value)
        self._filling = False
        self.move_changed.emit(self.move_values())

    def reset_move(self) -> None:
        self.set_move(**{name: 0.0 for name, *_ in MOVE_FIELDS})

    def _on_spin(self, name: str, value: float) -> None:
        slider = self.move_sliders[name]
        slider.blockSignals(True)
        slider.setValue(round(value * SLIDER_STEPS_PER_UNIT))
        slider.blockSignals(False)
        if not self._filling:
            self.move_changed.emit(self.move_values())

    def _on_slider(self, name: str, value: int) -> None:
        self.move_spins[name].setValue(value / SLIDER_STEPS_PER_UNIT)  # emits through ``_on_spin``

    # -- results -------------------------------------------------------------
    def show_prediction(self, max_mm: float, landmarks: dict) -> None:
        """Max skin displacement and the landmark table (displacements in mm, LPS)."""
        self.max_label.setText(f"Max skin displacement: {max_mm:.2f} mm")
        self.landmarks.setRowCount(len(landmarks))
        for row, (key, mark) in enumerate(landmarks.items()):
            dx, dy, dz = mark["displacement_mm"]
            cells = [LANDMARK_NAMES.get(key, key), f"{dx:+.2f}", f"{dy:+.2f}", f"{dz:+.2f}",
                     f"{mark['displacement_norm_mm']:.2f}"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col:
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                else:
                    x, y, z = mark["position_mm"]
                    item.setToolTip(f"{key} at LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm before the move")
                self.landmarks.setItem(row, col, item)

    def landmark_rows(self) -> list[list[str]]:
        """The landmark table as text (for tests and copy/paste)."""
        return [[self.landmarks.item(r, c).text() for c in range(self.landmarks.columnCount())]
                for r in range(self.landmarks.rowCount())]

    def view_settings(self) -> tuple[str, float]:
        return VIEW_MODES[self.view_mode.currentText()], self.opacity.value() / 100.0

    def _emit_view(self, *_args) -> None:
        self.view_changed.emit(*self.view_settings())

    def set_apply_text(self, model: str) -> None:
        """Say which prediction Apply stores ("linear" or "neo-Hookean")."""
        self.apply_button.setText(f"Apply ({model})")
