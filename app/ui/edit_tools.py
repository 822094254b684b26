"""Segment editor: runs the editing tools on the window's case through its undo stack.

Installed as a UI extension (``install(window)``): adds the editor dock, a
Segment menu with the tool shortcuts (B paint, E erase, G grow, [ ] brush
size), and hooks the slice views' mouse tool. Brush strokes are painted live
into the label map and pushed, when the mouse is released, as one
``LabelEditCommand`` holding only the compressed changed box. Whole-label
tools run on the window's worker and are applied on the GUI thread.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget

from app.case import Provenance
from app.pipeline import StepResult
from app.ui.commands import ApplyStepCommand
from app.ui.edit_commands import LabelEditCommand, edit_provenance, label_input, record_edit, wait_for_hashes
from app.ui.edit_panel import RADIUS_RANGE_MM, SCISSORS_MODES, TOOLS, SegmentEditorPanel
from app.ui.case_watch import on_case_refresh
from app.ui.extensions import menu
from imaging.edit_history import RegionChange
from imaging.errors import InputError
from imaging.segment_tools import (combine, copy_labelmap, disk_change, fill_holes, keep_islands, morphology,
                                   region_grow, remove_islands, scissors, sphere_change, split_by_plane)
from imaging.volume import LabelInfo, LabelMap, default_color
from viewer.brush_tool import BrushTool, MouseTool, PointTool
from viewer.picking import LassoTool, display_to_ndc, display_to_ndc_matrix

log = logging.getLogger(__name__)


class Stroke:
    """Dabs of one brush stroke painted live; ``finish`` turns them into one region change.

    Each dab keeps the box it overwrote, so the state before the stroke is
    rebuilt exactly (dabs undone in reverse order) without copying the volume.
    """

    def __init__(self, labelmap: LabelMap) -> None:
        self.labelmap = labelmap
        self._dabs: list[tuple[tuple[slice, ...], np.ndarray]] = []

    def add(self, change: Optional[RegionChange]) -> None:
        if change is None:
            return
        box = change.box
        self._dabs.append((box, self.labelmap.array[box].copy()))
        change.apply_to(self.labelmap.array)

    def finish(self) -> Optional[RegionChange]:
        """Put the label map back as before the stroke; return the stroke's new box content."""
        if not self._dabs:
            return None
        lo = np.min([[s.start for s in box] for box, _ in self._dabs], axis=0)
        hi = np.max([[s.stop for s in box] for box, _ in self._dabs], axis=0)
        union = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        after = self.labelmap.array[union].copy()
        for box, before in reversed(self._dabs):
            self.labelmap.array[box] = before
        self._dabs.clear()
        return RegionChange(tuple(int(a) for a in lo), after)


class SegmentEditor(QObject):
    """Connects the editor panel and mouse tools to one main window."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.panel = SegmentEditorPanel()
        self._stroke: Optional[Stroke] = None
        self._stroke_label = ""
        self._tool = None
        self.lasso = LassoTool(window.scene.plotter, self.cut_polygon)
        self._repaint = QTimer(self)
        self._repaint.setSingleShot(True)
        self._repaint.setInterval(0)
        self._repaint.timeout.connect(window.views.refresh)
        p = self.panel
        p.tool_changed.connect(self.set_tool)
        p.new_label_requested.connect(self.new_label)
        p.visibility_requested.connect(lambda name, on: window.seg_panel.set_visible("label", name, on))
        p.operation_requested.connect(self.run_operation)
        p.radius.valueChanged.connect(self._on_radius)

    # -- helpers --------------------------------------------------------------
    @property
    def case(self):
        return self.window.case

    def _status(self, text: str, ms: int = 8000) -> None:
        self.panel.info.setText(text)
        self.window.statusBar().showMessage(text, ms)

    def refresh(self) -> None:
        """The case changed: refill the label choices."""
        self.panel.set_case(self.case, lambda name: self.window.seg_panel.is_visible("label", name))

    def target(self) -> tuple[str, Optional[LabelMap]]:
        name = self.panel.current_label()
        return name, (None if self.case is None else self.case.labels.get(name))

    def _on_grid(self, labelmap: LabelMap) -> bool:
        volume = self.window.views.volume
        return volume is not None and labelmap.array.shape == volume.array.shape

    def push_edit(self, name: str, labelmap: LabelMap, new, description: str,
                  provenance: Optional[Provenance] = None) -> bool:
        """Write ``new`` into the label and push the undo step; False if nothing changed.

        ``provenance`` (from ``edit_provenance``, made before the edit) becomes
        the label's record while the step is done.
        """
        edit = record_edit(labelmap, new, description)
        if edit is None:
            self._status(f"{description}: no voxel changed")
            return False
        self.window.undo_stack.push(LabelEditCommand(self.case, name, labelmap, edit, provenance))
        ml = edit.changed_voxels * float(np.prod(labelmap.geometry.spacing_xyz)) / 1000.0
        self._status(f"{description}: {edit.changed_voxels:,} voxels changed ({ml:.2f} mL); "
                     f"undo step {edit.nbytes:,} bytes")
        return True

    # -- labels ---------------------------------------------------------------
    def new_label(self, name: str) -> bool:
        """Create an empty label ``name`` on the CT grid (undoable)."""
        case = self.case
        if case is None or not case.volumes:
            self.window.report_error(InputError("no CT open: open a scan first"), "New label")
            return False
        if name in case.labels:
            self.panel.label.setCurrentText(name)
            return True
        volume = case.primary_volume()[1]
        label = LabelMap(np.zeros(volume.array.shape, np.uint8), volume.geometry,
                         {1: LabelInfo(name, default_color(name, len(case.labels)))})
        prov = Provenance("new_label", {"name": name}, [case.input_ref("volume", case.primary_volume()[0])])
        self.window.undo_stack.push(ApplyStepCommand(case, StepResult("label", name, label, prov), f"New label {name}"))
        self.panel.label.setCurrentText(name)
        self.panel.new_name.clear()
        return True

    # -- mouse tools ----------------------------------------------------------
    def set_tool(self, key: str) -> None:
        """Give the slice views' left button to ``paint``, ``erase``, ``grow`` or back (``""``)."""
        if key in ("paint", "erase"):
            self._tool = BrushTool(key, self.panel.radius.value(), self._begin_stroke, self._dab, self._end_stroke,
                                   color="#ffd23c" if key == "paint" else "#50c8ff",
                                   on_deactivate=lambda t=key: self._tool_gone(t))
        elif key == "grow":
            self._tool = PointTool("grow", self._grow_at, on_deactivate=lambda: self._tool_gone("grow"))
        elif key == "scissors":
            # The slice views get a tool that does nothing (Shift+click moves the crosshair): when
            # another panel takes the views, its ``deactivate`` switches the 3D lasso off.
            self._tool = MouseTool()
            self._tool.name = "scissors"
            self._tool.deactivate = lambda: self._tool_gone("scissors")
        else:
            self._tool = None
        self.window.views.set_tool(self._tool)
        self.lasso.set_enabled(key == "scissors")
        if self.panel.current_tool() != key:
            self.panel.set_tool(key)

    def _tool_gone(self, key: str) -> None:
        # Another panel (landmarks) took the mouse: untick ours without touching the views.
        if self.window.views.tool is not self._tool or self._tool is None:
            self._tool = None
            self.lasso.set_enabled(False)
            button = self.panel.tool_buttons.get(key)
            if button is not None and button.isChecked():
                button.blockSignals(True)
                button.setChecked(False)
                button.blockSignals(False)

    def _on_radius(self, value: float) -> None:
        if isinstance(self._tool, BrushTool):
            self._tool.radius_mm = float(value)
            for view in self.window.views.views.values():
                view.canvas.update()

    def step_radius(self, factor: float) -> None:
        """[ and ]: brush radius times ``factor``, within the allowed range."""
        lo, hi = RADIUS_RANGE_MM
        self.panel.radius.setValue(min(hi, max(lo, self.panel.radius.value() * factor)))

    def _begin_stroke(self, view_name: str) -> None:
        name, labelmap = self.target()
        if labelmap is None and name == "" and self.case is not None and self.case.volumes:
            self.new_label("edit")
            name, labelmap = self.target()
        if labelmap is None or not self._on_grid(labelmap):
            self._stroke = None
            self._status("Choose or create a label on this CT's grid to paint into")
            return
        if self.window.runner.busy:
            self._stroke = None
            self._status(f"Busy: {self.window.runner.title}; paint when it has finished")
            return
        wait_for_hashes()  # the last stroke's record may still be hashing this array
        self._stroke = Stroke(labelmap)
        self._stroke_label = name
        self._stroke_brush = "sphere" if self.panel.sphere.isChecked() else view_name
        self._stroke_centers: list[list[float]] = []

    def _dab(self, view_name: str, center_lps: np.ndarray) -> None:
        if self._stroke is None:
            return
        labelmap = self._stroke.labelmap
        center_lps = np.round(np.asarray(center_lps, dtype=float), 4)  # exactly what the record replays
        erase = self._tool is not None and self._tool.name == "erase"
        kw = {"value": 0, "editable": 1} if erase else {"value": 1}
        r = self.panel.radius.value()
        change = (sphere_change(labelmap, center_lps, r, **kw) if self._stroke_brush == "sphere"
                  else disk_change(labelmap, center_lps, r, axis=self._stroke_brush, **kw))
        self._stroke.add(change)
        self._stroke_centers.append([float(v) for v in center_lps])
        self._repaint.start()

    def _end_stroke(self) -> None:
        stroke, self._stroke = self._stroke, None
        if stroke is None:
            return
        change = stroke.finish()
        if change is None:
            return
        erase = self._tool is not None and self._tool.name == "erase"
        shape = "sphere" if self._stroke_brush == "sphere" else "disk"
        radius = self.panel.radius.value()
        desc = f"{'Erase' if erase else 'Paint'} {self._stroke_label} ({shape} {radius:g} mm)"
        prov = edit_provenance(self.case, self._stroke_label, stroke.labelmap, "erase" if erase else "paint",
                               {"centers_lps": self._stroke_centers, "radius_mm": radius,
                                "brush": self._stroke_brush})
        if not self.push_edit(self._stroke_label, stroke.labelmap, change, desc, prov):
            self.window.views.refresh()

    def cut_polygon(self, polygon_display_xy) -> bool:
        """Scissors: cut (or fill) the label through the depth of the 3D view inside/outside a drawn outline."""
        name, labelmap = self.target()
        if labelmap is None:
            self._status("Choose a label to cut")
            return False
        plotter = self.window.scene.plotter
        polygon = display_to_ndc(plotter, polygon_display_xy).round(6)  # as recorded
        matrix = display_to_ndc_matrix(plotter)
        mode, erase = SCISSORS_MODES[self.panel.scissors_mode.currentText()]
        snapshot = copy_labelmap(labelmap)

        def compute(progress, cancelled):
            return scissors(snapshot, polygon, matrix, mode=mode, erase=erase)

        def apply(result: LabelMap) -> None:
            params = {"polygon_ndc": polygon.tolist(), "view_matrix": matrix.tolist(), "mode": mode,
                      "erase": erase}
            prov = edit_provenance(self.case, name, labelmap, "scissors_view", params)
            self.push_edit(name, labelmap, result, f"Scissors {name} ({self.panel.scissors_mode.currentText()})",
                           prov)

        return self._run(f"Cutting {name}", name, compute, apply)

    # -- worker tools ---------------------------------------------------------
    def _run(self, title: str, name: str, compute: Callable, apply: Callable) -> bool:
        """Run ``compute(progress, cancelled)`` on the worker; ``apply(result)`` if ``name`` is untouched."""
        if self.window.runner.busy:
            self._status(f"Busy: {self.window.runner.title}")
            return False
        case = self.case
        labelmap = case.labels.get(name)
        stamp = None if labelmap is None else labelmap.content_hash()

        def done(result) -> None:
            current = case.labels.get(name)
            if case is not self.case or current is not labelmap or (
                    current is not None and current.content_hash() != stamp):
                self.window.report_error(InputError(f"label {name!r} changed while {title.lower()} ran; "
                                                    "nothing applied, run it again"), title)
                return
            apply(result)

        window = self.window
        return window.runner.run(
            title, compute, on_done=done, on_error=lambda exc: window.report_error(exc, title),
            on_cancelled=lambda: window.statusBar().showMessage(f"Cancelled: {title}; nothing changed"))

    def _grow_at(self, view_name: str, ijk, lps: np.ndarray) -> None:
        self.grow_from(lps)

    def grow_from(self, seed_lps) -> bool:
        """Region growing from a seed (LPS mm) within the panel's HU range; replaces the label's voxels."""
        case = self.case
        if case is None or not case.volumes:
            return False
        volume = case.primary_volume()[1]
        name = self.panel.current_label() or "region"
        hu = self.panel.grow_range()

        def compute(progress, cancelled):
            return region_grow(volume, seed_lps, hu_range=hu, name=name, progress=progress, cancelled=cancelled)

        def apply(grown: LabelMap) -> None:
            labelmap = case.labels.get(name)
            if labelmap is None:
                prov = Provenance("region_grow", {"seed_lps": [float(v) for v in seed_lps], "hu_range": list(hu)},
                                  [case.input_ref("volume", case.primary_volume()[0])])
                self.window.undo_stack.push(ApplyStepCommand(case, StepResult("label", name, grown, prov),
                                                             f"Grow {name}"))
                self.panel.label.setCurrentText(name)
                self._status(f"Grow {name}: {grown.voxel_count(1):,} voxels")
                return
            params = {"seed_lps": [[float(v) for v in seed_lps]], "mode": "connected", "hu_range": list(hu),
                      "preset": None, "multiplier": 2.5, "iterations": 4, "radius_vox": 1}
            prov = edit_provenance(case, name, labelmap, "grow", params,
                                   [case.input_ref("volume", case.primary_volume()[0])])
            self.push_edit(name, labelmap, (grown.array > 0).astype(labelmap.array.dtype),
                           f"Grow {name} from seed", prov)

        return self._run(f"Growing {name}", name, compute, apply)

    def run_operation(self, op: str, params: dict) -> bool:
        """Run a whole-label tool on the edited label (see ``SegmentEditorPanel.operation_requested``)."""
        name, labelmap = self.target()
        if labelmap is None:
            self.window.report_error(InputError("choose a label to edit first"), "Segment editor")
            return False
        if op == "split":
            return self._split(name, labelmap, params)
        other = self.case.labels.get(params.get("other", ""))
        funcs = {
            "keep_largest": (lambda lab, **kw: keep_islands(lab, "largest"), "Keep largest island"),
            "remove_small": (lambda lab, **kw: remove_islands(lab, "min_size", min_size_mm3=params["min_size_mm3"]),
                             f"Remove islands < {params.get('min_size_mm3', 0):g} mm3"),
            "morphology": (lambda lab, **kw: morphology(lab, params["op"], params["radius_mm"], **kw),
                           f"{params.get('op', '').capitalize()} {params.get('radius_mm', 0):g} mm"),
            "fill_holes": (lambda lab, **kw: fill_holes(lab), "Fill holes"),
            "logic": (lambda lab, **kw: combine(lab, other, params["op"]) if other is not None else _no_other(),
                      f"{params.get('op', '').capitalize()} {params.get('other', '')}"),
        }
        if op not in funcs:
            raise ValueError(f"unknown segment editor operation {op!r}")
        func, text = funcs[op]
        record = _RECORDS[op](params)
        snapshot = copy_labelmap(labelmap)  # the worker reads a copy while the user may still look around

        def compute(progress, cancelled):
            if op == "morphology":
                return func(snapshot, progress=progress, cancelled=cancelled)
            return func(snapshot)

        def apply(result: LabelMap) -> None:
            inputs = None
            if op == "logic":
                inputs = [label_input(self.case, name, labelmap), self.case.input_ref("label", params["other"])]
            prov = edit_provenance(self.case, name, labelmap, record[0], record[1], inputs)
            self.push_edit(name, labelmap, result, f"{text} ({name})", prov)

        return self._run(f"{text} ({name})", name, compute, apply)

    def _split(self, name: str, labelmap: LabelMap, params: dict) -> bool:
        volume = self.window.views.volume
        point = self.window.views.point
        if volume is None or point is None:
            return False
        point_lps = (volume.geometry.index_to_lps() @ np.array([*point, 1.0]))[:3]
        names = (f"{name}_a", f"{name}_b")

        def compute(progress, cancelled):
            return split_by_plane(labelmap, point_lps, params["normal_lps"], kerf_mm=params["kerf_mm"], names=names)

        def apply(parts) -> None:
            stack = self.window.undo_stack
            stack.beginMacro(f"Split {name} (osteotomy)")
            for part_name, part in zip(names, parts):
                prov = Provenance("split_by_plane", {"point_lps": point_lps.tolist(),
                                                      "normal_lps": list(params["normal_lps"]),
                                                      "kerf_mm": params["kerf_mm"]},
                                  [self.case.input_ref("label", name)])
                stack.push(ApplyStepCommand(self.case, StepResult("label", part_name, part, prov), f"Add {part_name}"))
            stack.endMacro()
            self._status(f"Split {name}: {parts[0].voxel_count(1):,} + {parts[1].voxel_count(1):,} voxels")

        return self._run(f"Splitting {name}", name, compute, apply)


#: Whole-label tools as ``twinplan edit`` records them: (op, params) from the panel's parameters.
_RECORDS = {
    "keep_largest": lambda p: ("islands", {"islands": "largest", "remove": False, "min_size_mm3": 0.0,
                                           "seed_lps": None, "count": 1}),
    "remove_small": lambda p: ("islands", {"islands": "min_size", "remove": True,
                                           "min_size_mm3": p["min_size_mm3"], "seed_lps": None, "count": 1}),
    "morphology": lambda p: ("morph", {"morph": p["op"], "radius_mm": p["radius_mm"], "shell": "inside",
                                       "distance": "solid"}),
    "fill_holes": lambda p: ("fill", {"view": None}),
    "logic": lambda p: ("combine", {"with": p["other"], "logic": p["op"]}),
}


def _no_other():
    raise InputError("label logic: choose the second label")


def install(window) -> SegmentEditor:
    """Add the segment editor dock, its menu and shortcuts to ``window``."""
    editor = SegmentEditor(window)
    window.segment_editor = editor
    dock = QDockWidget("Segment editor", window)
    dock.setObjectName("dock_segment_editor")
    dock.setWidget(editor.panel)
    window.addDockWidget(Qt.RightDockWidgetArea, dock)
    window.tabifyDockWidget(window.docks[0], dock)
    window.docks[0].raise_()
    window.segment_editor_dock = dock

    seg_menu = menu(window, "&Segment")
    show = dock.toggleViewAction()
    show.setText("Segment &editor")
    show.setShortcut(QKeySequence("Ctrl+Shift+G"))
    seg_menu.addAction(show)
    seg_menu.addSeparator()
    for key, text, shortcut, tip in TOOLS:
        action = QAction(f"{text} tool", window)
        action.setObjectName(f"action_tool_{key}")
        action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(tip)
        action.setCheckable(False)
        action.triggered.connect(lambda _c=False, k=key: _toggle_tool(editor, dock, k))
        seg_menu.addAction(action)
        window.actions_by_name[f"tool_{key}"] = action
    for shortcut, factor, text in (("[", 1 / 1.25, "Smaller brush"), ("]", 1.25, "Larger brush")):
        action = QAction(text, window)
        action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _c=False, f=factor: editor.step_radius(f))
        seg_menu.addAction(action)
        window.actions_by_name["brush_smaller" if factor < 1 else "brush_larger"] = action
    on_case_refresh(window, editor.refresh)
    return editor


def _toggle_tool(editor: SegmentEditor, dock: QDockWidget, key: str) -> None:
    dock.show()
    dock.raise_()
    editor.set_tool("" if editor.panel.current_tool() == key else key)
