"""History dock: the digital thread of the case as a tree, with "show inputs" and "redo from here".

Each current item is a top-level row; its children are the inputs it was
computed from (recursively, down to the raw source). "Show inputs" selects
the inputs in this tree and in the segmentation panel; "Redo from here"
recomputes the selected item and everything derived from it on the
window's worker (``app.replay.redo_from``) and applies the results as one
undo step.
"""
from __future__ import annotations

import json
import logging
from typing import Optional

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (QDockWidget, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QTreeWidget,
                               QTreeWidgetItem, QVBoxLayout, QWidget)

from app.thread import Thread, build_thread, topological_order
from app.ui.extensions import make_action, menu

log = logging.getLogger(__name__)

HIGHLIGHT = QColor(255, 196, 64, 90)
MAX_DEPTH = 12  # a derivation deeper than this is cut (never met in practice; guards a corrupt manifest)


class ThreadPanel(QWidget):
    """Provenance tree of a case plus the details of the selected node."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("thread_panel")
        self.thread: Optional[Thread] = None
        self.tree = QTreeWidget()
        self.tree.setObjectName("thread_tree")
        self.tree.setHeaderLabels(["Item", "Operation", "When", "Hash"])
        self.tree.setSelectionMode(QTreeWidget.ExtendedSelection)
        self.tree.setColumnWidth(0, 230)
        self.tree.setColumnWidth(1, 150)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(150)
        self.show_inputs_button = QPushButton("Show inputs")
        self.redo_button = QPushButton("Redo from here")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.show_inputs_button)
        buttons.addWidget(self.redo_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.details)
        self.tree.currentItemChanged.connect(lambda *_: self._show_details())
        self._set_enabled(False)

    # -- content -------------------------------------------------------------
    def set_case(self, case) -> None:
        """Rebuild the tree from ``case`` (or clear it); keeps the selected id if it still exists."""
        keep = self.selected_id()
        self.tree.clear()
        self.thread = build_thread(case) if case is not None else None
        if self.thread is not None:
            for nid in topological_order(self.thread):
                if self.thread.nodes[nid].kind == "item":
                    self._add(self.tree.invisibleRootItem(), nid, 0)
        self._set_enabled(False)
        if keep:
            self.select(keep)
        self._show_details()

    def _add(self, parent: QTreeWidgetItem, nid: str, depth: int) -> None:
        node = self.thread.nodes[nid]
        when = node.provenance.time[:19].replace("T", " ") if node.provenance else ""
        row = QTreeWidgetItem(parent, [nid, node.operation, when, node.hash[:12]])
        row.setData(0, Qt.UserRole, nid)
        row.setToolTip(0, nid)
        if node.stale:
            row.setToolTip(1, "an input changed since this was computed: " + ", ".join(node.stale))
            row.setForeground(1, QBrush(QColor(230, 120, 60)))
        if depth < MAX_DEPTH:
            for src in node.inputs:
                self._add(row, src, depth + 1)

    def rows(self, nid: str) -> list[QTreeWidgetItem]:
        """Every row showing node ``nid`` (an input appears under each item using it)."""
        out = []
        stack = [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]
        while stack:
            row = stack.pop()
            if row.data(0, Qt.UserRole) == nid:
                out.append(row)
            stack.extend(row.child(i) for i in range(row.childCount()))
        return out

    def select(self, nid: str) -> bool:
        """Make the top-level row of ``nid`` (else its first row) current."""
        rows = self.rows(nid)
        if not rows:
            return False
        top = [r for r in rows if r.parent() is None]
        self.tree.setCurrentItem((top or rows)[0])
        return True

    def selected_id(self) -> Optional[str]:
        row = self.tree.currentItem()
        return None if row is None else row.data(0, Qt.UserRole)

    def _set_enabled(self, on: bool) -> None:
        self.show_inputs_button.setEnabled(on)
        nid = self.selected_id()
        self.redo_button.setEnabled(on and self.thread is not None and nid is not None
                                    and nid in self.thread.nodes and self.thread.nodes[nid].kind == "item")

    def _show_details(self) -> None:
        nid = self.selected_id()
        if self.thread is None or nid is None or nid not in self.thread.nodes:
            self.details.setPlainText("")
            self._set_enabled(False)
            return
        node = self.thread.nodes[nid]
        text = [f"{nid}  ({node.kind})", f"operation: {node.operation}", f"sha256: {node.hash}"]
        if node.provenance is not None:
            p = node.provenance
            text += [f"time: {p.time}", f"user: {p.user}",
                     "versions: " + ", ".join(f"{k} {v}" for k, v in p.versions.items()),
                     "params: " + json.dumps(p.params, default=str)]
        text += [f"input: {i}" for i in node.inputs]
        self.details.setPlainText("\n".join(text))
        self._set_enabled(True)

    def highlight_inputs(self, nid: str) -> list[str]:
        """Select and tint the rows of ``nid``'s inputs; returns the input ids."""
        for row in self.tree.selectedItems():
            row.setSelected(False)
        for top in range(self.tree.topLevelItemCount()):
            stack = [self.tree.topLevelItem(top)]
            while stack:
                row = stack.pop()
                for col in range(4):
                    row.setBackground(col, QBrush())
                row.setFont(0, QFont())
                stack.extend(row.child(i) for i in range(row.childCount()))
        inputs = self.thread.inputs_of(nid) if self.thread and nid in self.thread.nodes else []
        bold = QFont()
        bold.setBold(True)
        for src in inputs:
            for row in self.rows(src):
                row.setSelected(True)
                row.setFont(0, bold)
                for col in range(4):
                    row.setBackground(col, QBrush(HIGHLIGHT))
                parent = row.parent()
                while parent is not None:
                    parent.setExpanded(True)
                    parent = parent.parent()
        return inputs


class ThreadController:
    """Connects the panel to the window: case changes, selection in other panels, the worker, undo."""

    def __init__(self, window) -> None:
        self.window = window
        self.panel = ThreadPanel()
        self._case = None
        self._pending = False
        self.report: Optional[dict] = None
        self.panel.show_inputs_button.clicked.connect(self.show_inputs)
        self.panel.redo_button.clicked.connect(self.redo_selected)
        window.case_hooks.append(self.set_case)
        self.set_case(window.case)

    def set_case(self, case) -> None:
        if self._case is not None:
            self._case.changed.disconnect(self._on_changed)
        self._case = case
        if case is not None:
            case.changed.connect(self._on_changed)
        self.panel.set_case(case)

    def _on_changed(self, kind: str, name: str) -> None:
        # Hashing every item costs ~0.3 s on a head CT: one rebuild per burst of changes.
        if not self._pending:
            self._pending = True
            QTimer.singleShot(0, self._rebuild)

    def _rebuild(self) -> None:
        self._pending = False
        self.panel.set_case(self._case)

    def show_inputs(self) -> list[str]:
        """Highlight the inputs of the selected node here and select them in the segmentation panel."""
        nid = self.panel.selected_id()
        if nid is None:
            return []
        inputs = self.panel.highlight_inputs(nid)
        keys = {tuple(i.split("~", 1)[0].split("/", 1)) for i in inputs}
        seg = self.window.seg_panel.items
        for i in range(seg.topLevelItemCount()):
            group = seg.topLevelItem(i)
            for j in range(group.childCount()):
                row = group.child(j)
                row.setSelected(row.data(0, Qt.UserRole) in keys)
        self.panel.status.setText(f"Inputs of {nid}: " + (", ".join(inputs) or "none (a raw input)"))
        return inputs

    def redo_selected(self) -> bool:
        """Recompute the selected item and its dependents on the worker; one undo step."""
        from app.replay import redo_from
        from app.ui.commands import ApplyStepCommand

        window, case, nid = self.window, self.window.case, self.panel.selected_id()
        if case is None or nid is None or window.runner.busy:
            return False

        def done(results) -> None:
            if case is not window.case:
                return
            stack = window.undo_stack
            stack.beginMacro(f"Redo from {nid}")
            for r in results:
                stack.push(ApplyStepCommand(case, r, f"Recompute {r.kind}/{r.name}"))
            stack.endMacro()
            QTimer.singleShot(0, lambda: self.panel.select(nid))
            self.panel.status.setText(f"Recomputed {len(results)} item(s): " +
                                      ", ".join(f"{r.kind}/{r.name}" for r in results))

        return window.runner.run(
            f"Redo from {nid}", lambda progress, cancelled: redo_from(case, nid, progress=progress,
                                                                      cancelled=cancelled),
            done, lambda exc: window.report_error(exc, f"Redo from {nid}"),
            lambda: window.statusBar().showMessage(f"Cancelled: redo from {nid}; nothing changed"))


    def import_followup(self, path: str, landmarks_file: Optional[str] = None) -> bool:
        """Register, segment and compare a follow-up scan on the worker; its items are one undo step."""
        from app.followup import FollowupRequest, compute_followup
        from app.ui.commands import ApplyStepCommand

        window, case = self.window, self.window.case
        if case is None or window.runner.busy:
            return False
        request = FollowupRequest(scan=path, landmarks_file=landmarks_file)

        def done(out) -> None:
            results, report = out
            if case is not window.case:
                return
            stack = window.undo_stack
            stack.beginMacro("Compare with follow-up scan")
            for r in results:
                stack.push(ApplyStepCommand(case, r, f"Follow-up {r.kind}/{r.name}"))
            stack.endMacro()
            self.report = report
            d, n = report["distance"], report["no_change"]
            # After the tree's rebuild (queued by the pushes above).
            QTimer.singleShot(0, lambda: self.panel.select(f"surface/{request.name}_distance"))
            self.panel.status.setText(
                f"Follow-up vs {report['prediction']}: median |d| {d['median_abs_mm']:.2f} mm, p95 "
                f"{d['p95_abs_mm']:.2f} mm (unchanged skin: {n['median_abs_mm']:.2f} mm); registration "
                f"{report['registration']['rotation_deg']:.2f} deg")

        return window.runner.run(
            "Comparing with the follow-up scan",
            lambda progress, cancelled: compute_followup(case, request, progress=progress, cancelled=cancelled),
            done, lambda exc: window.report_error(exc, "Follow-up scan"),
            lambda: window.statusBar().showMessage("Cancelled: follow-up comparison; nothing changed"))

    def choose_followup(self) -> bool:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.window, "Follow-up or post-op scan", "",
                                              "Volumes (*.nrrd *.nhdr *.nii *.nii.gz *.mha *.mhd *.inv3)")
        return bool(path) and self.import_followup(path)


def install(window) -> ThreadController:
    """Add the History dock (tabbed with the plan dock) and Plan > History."""
    controller = ThreadController(window)
    window.thread_controller = controller
    dock = QDockWidget("History", window)
    dock.setObjectName("dock_thread_panel")
    dock.setWidget(controller.panel)
    window.addDockWidget(Qt.RightDockWidgetArea, dock)
    window.tabifyDockWidget(window.plan_dock, dock)
    window.thread_dock = dock

    def focus() -> None:
        dock.show()
        dock.raise_()
        controller.panel.tree.setFocus(Qt.ShortcutFocusReason)

    plan_menu = menu(window, "&Plan")
    plan_menu.addAction(make_action(window, "thread_panel", "&History (digital thread)...", focus, "Ctrl+Alt+H",
                                    "Where every item came from: inputs, parameters, versions; redo a step"))
    plan_menu.addAction(make_action(window, "followup", "Compare with &follow-up scan...", controller.choose_followup,
                                    "", "Register a post-op scan, segment it like the baseline, compare the prediction"))
    return controller
