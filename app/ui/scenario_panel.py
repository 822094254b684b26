"""Scenarios dock: list, add/branch/rename/delete (undoable), run and sweep on the worker, compare view.

Every change to ``case.scenarios`` goes through the window's undo stack.
Runs and sweeps read a snapshot of the case on the window's ``TaskRunner``
(progress bar, Esc cancels); a run solves in a separate process
(``solve_step``), a sweep on Dask worker processes; the results come back
through the undo stack. The compare view shows 2-4 scenarios side by side.
"""
from __future__ import annotations

import json
import logging
from typing import Callable, Optional

from PySide6.QtCore import Qt
from PySide6.QtGui import QUndoCommand
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDockWidget,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app import scenarios as sc
from app.case import Case
from app.scenario_kinds import KINDS
from app.ui.extensions import make_action, menu
from imaging.errors import InputError

log = logging.getLogger(__name__)


class ScenarioCommand(QUndoCommand):
    """An undoable scenario change given as two callables; ``done`` skips the first redo (already applied)."""

    def __init__(self, text: str, redo: Callable[[], None], undo: Callable[[], None], done: bool = False) -> None:
        super().__init__(text)
        self._redo, self._undo, self._skip = redo, undo, done

    def redo(self) -> None:
        if self._skip:
            self._skip = False
            return
        self._redo()

    def undo(self) -> None:
        self._undo()


def snapshot_for(case: Case, name: str) -> Case:
    """What a worker needs to run scenario ``name``: the case's items and that scenario (no listeners)."""
    snap = Case(case.name)
    snap.volumes, snap.labels = dict(case.volumes), dict(case.labels)
    snap.surfaces, snap.landmarks = dict(case.surfaces), dict(case.landmarks)
    snap.scenarios = {name: case.scenarios[name]}
    return snap


class ScenarioPanel(QWidget):
    """The dock's widgets; ``ScenarioController`` wires them to the window."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("scenario_panel")
        self.list = QListWidget()
        self.list.setObjectName("scenario_list")
        self.list.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.list.setToolTip("Scenarios of the case (select 2-4 and Compare)")
        self.name = QLineEdit()
        self.name.setPlaceholderText("name of the new scenario")
        self.kind = QComboBox()
        self.kind.addItems(list(KINDS))
        self.params = QPlainTextEdit()
        self.params.setObjectName("scenario_params")
        self.params.setToolTip("Parameters as JSON (tissue: segment, move [tx,ty,tz mm, rx,ry,rz deg], fixed, "
                               "voxel_mm, youngs_modulus_pa, poisson_ratio, model)")
        self.params.setMaximumHeight(110)
        self.buttons: dict[str, QPushButton] = {}
        grid = QGridLayout()
        for i, (key, text, tip) in enumerate((
                ("add", "Add", "New scenario over the baseline with these parameters"),
                ("branch", "Branch", "Copy the selected scenario under the new name, with these parameters"),
                ("from_plan", "From plan", "Parameters of the soft-tissue plan panel's current move"),
                ("rename", "Rename", "Give the selected scenario the new name"),
                ("set", "Set params", "Replace the selected scenario's parameters (drops its results)"),
                ("delete", "Delete", "Delete the selected scenario (undo brings it back)"),
                ("run", "Run", "Compute the selected scenarios (worker; Esc cancels)"),
                ("sweep", "Sweep", "Uncertainty sweep of the selected scenario on Dask workers"),
                ("compare", "Compare", "Show 2-4 selected scenarios side by side"))):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.setObjectName(f"scenario_{key}")
            grid.addWidget(b, i // 3, i % 3)
            self.buttons[key] = b
        self.samples, self.seed, self.workers = QSpinBox(), QSpinBox(), QSpinBox()
        for spin, lo, hi, value, tip in ((self.samples, 2, 10000, 16, "Latin hypercube samples"),
                                         (self.seed, 0, 2 ** 31 - 1, 0, "Sampling seed (recorded)"),
                                         (self.workers, 0, 64, 2, "Dask worker processes (0: serial)")):
            spin.setRange(lo, hi)
            spin.setValue(value)
            spin.setToolTip(tip)
        sweep_row = QHBoxLayout()
        for label, spin in (("samples", self.samples), ("seed", self.seed), ("workers", self.workers)):
            sweep_row.addWidget(QLabel(label))
            sweep_row.addWidget(spin)
        self.info = QLabel("")
        self.info.setObjectName("scenario_info")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextSelectableByMouse)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Kind", self.kind)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list, 1)
        layout.addLayout(form)
        layout.addWidget(self.params)
        layout.addLayout(grid)
        layout.addLayout(sweep_row)
        layout.addWidget(self.info)

    def selected(self) -> list[str]:
        return [i.data(Qt.UserRole) for i in self.list.selectedItems()]

    def current(self) -> Optional[str]:
        names = self.selected()
        return names[0] if names else None

    def param_dict(self) -> dict:
        text = self.params.toPlainText().strip() or "{}"
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise InputError(f"scenario parameters: not valid JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise InputError("scenario parameters: expected a JSON object {...}")
        return value

    def fill(self, case: Optional[Case]) -> None:
        """Rebuild the list from ``case.scenarios``, keeping the selection."""
        keep = set(self.selected())
        self.list.blockSignals(True)
        self.list.clear()
        for name, s in (case.scenarios.items() if case is not None else []):
            summary = s.summary
            first = next(iter(summary.items()), None)
            state = "not run" if first is None else f"{first[0].replace('_', ' ')} {first[1]:.3g}"
            swept = ", swept" if "sweep" in s.results else ""
            item = QListWidgetItem(f"{name}   [{s.kind}, from {s.parent}]  {state}{swept}")
            item.setData(Qt.UserRole, name)
            self.list.addItem(item)
            item.setSelected(name in keep)
        self.list.blockSignals(False)
        self.show_details(case)

    def show_details(self, case: Optional[Case]) -> None:
        name = self.current()
        if case is None or name not in (case.scenarios if case else {}):
            self.info.setText("")
            return
        s = case.scenarios[name]
        self.params.setPlainText(json.dumps(s.params))
        self.kind.setCurrentText(s.kind)
        lines = [f"<b>{name}</b> ({s.kind}, from {s.parent})"]
        lines += [f"{k}: {v:.4g}" for k, v in s.summary.items()]
        for k, b in s.results.get("sweep", {}).get("bands", {}).items():
            lines.append(f"{k}: 5-95 % {b['p5']:.3g} - {b['p95']:.3g} (median {b['p50']:.3g})")
        for k, p in s.results.get("sweep", {}).get("probability_ffr_below_0_80", {}).items():
            lines.append(f"P({k} &lt; 0.80) = {p:.2f}")
        self.info.setText("<br>".join(lines))


class ScenarioController:
    """Actions of the scenarios dock on ``window`` (its case, undo stack, runner and error handler)."""

    def __init__(self, window) -> None:
        self.window = window
        self.panel = ScenarioPanel()
        self.compare_view = None
        b = self.panel.buttons
        b["add"].clicked.connect(self.add)
        b["branch"].clicked.connect(self.branch)
        b["from_plan"].clicked.connect(self.fill_from_plan)
        b["rename"].clicked.connect(self.rename)
        b["set"].clicked.connect(self.set_params)
        b["delete"].clicked.connect(self.delete)
        b["run"].clicked.connect(self.run)
        b["sweep"].clicked.connect(self.sweep)
        b["compare"].clicked.connect(self.compare)
        self.panel.list.itemSelectionChanged.connect(lambda: self.panel.show_details(self.window.case))

    @property
    def case(self) -> Optional[Case]:
        return self.window.case

    def _guard(self, context: str, fn) -> bool:
        try:
            if self.case is None:
                raise InputError("no case open")
            fn()
            return True
        except InputError as exc:
            self.window.report_error(exc, context)
            return False

    def _push(self, text: str, redo, undo, done: bool = True) -> None:
        self.window.undo_stack.push(ScenarioCommand(text, redo, undo, done))

    # -- editing -------------------------------------------------------------
    def add(self) -> bool:
        def do():
            case, name = self.case, self.panel.name.text().strip()
            s = sc.add_scenario(case, name, self.panel.kind.currentText(), self.panel.param_dict())
            self._push(f"Add scenario {s.name}", lambda: sc.put_scenario(case, s),
                       lambda: sc.delete_scenario(case, s.name))
            self._select(s.name)
        return self._guard("Add scenario", do)

    def branch(self) -> bool:
        def do():
            case, source = self.case, self.panel.current()
            if source is None:
                raise InputError("branch: select the scenario to copy")
            params = self.panel.param_dict()
            changes = {k: v for k, v in params.items() if case.scenarios[source].params.get(k) != v}
            s = sc.branch_scenario(case, source, self.panel.name.text().strip(), changes)
            self._push(f"Branch {s.name} from {source}", lambda: sc.put_scenario(case, s),
                       lambda: sc.delete_scenario(case, s.name))
            self._select(s.name)
        return self._guard("Branch scenario", do)

    def rename(self) -> bool:
        def do():
            case, old, new = self.case, self.panel.current(), self.panel.name.text().strip()
            if old is None:
                raise InputError("rename: select a scenario")
            sc.rename_scenario(case, old, new)
            self._push(f"Rename scenario {old} to {new}", lambda: sc.rename_scenario(case, old, new),
                       lambda: sc.rename_scenario(case, new, old))
            self._select(new)
        return self._guard("Rename scenario", do)

    def set_params(self) -> bool:
        def do():
            case, name = self.case, self.panel.current()
            if name is None:
                raise InputError("set parameters: select a scenario")
            old = sc.set_scenario_params(case, name, self.panel.param_dict())
            new = case.scenarios[name]
            self._push(f"Parameters of {name}", lambda: sc.put_scenario(case, new), lambda: sc.put_scenario(case, old))
        return self._guard("Scenario parameters", do)

    def delete(self) -> bool:
        def do():
            case, names = self.case, self.panel.selected()
            if not names:
                raise InputError("delete: select a scenario")
            for name in names:
                record = [sc.delete_scenario(case, name)]

                def redo(n=name, rec=record):
                    rec[0] = sc.delete_scenario(case, n)
                self._push(f"Delete scenario {name}", redo, lambda rec=record: sc.restore_scenario(case, rec[0]))
        return self._guard("Delete scenario", do)

    def fill_from_plan(self) -> bool:
        """Parameters of the plan panel: its segment, fixed bone, element size, Poisson and live move."""
        def do():
            plan = self.window.plan_panel.tissue_plan()
            state = getattr(self.window, "plan_state", None)
            move = list(state.values) if state is not None else [0.0] * 6
            self.panel.kind.setCurrentText("tissue")
            self.panel.params.setPlainText(json.dumps({
                "segment": plan.segment, "move": move, "fixed": list(plan.fixed), "skin": plan.skin,
                "voxel_mm": plan.voxel_mm, "poisson_ratio": plan.poisson_ratio}))
        return self._guard("Scenario from plan", do)

    def _select(self, name: str) -> None:
        lst = self.panel.list
        for i in range(lst.count()):
            lst.item(i).setSelected(lst.item(i).data(Qt.UserRole) == name)

    # -- running ---------------------------------------------------------------
    def run(self) -> bool:
        """Run the selected scenarios one after another on the worker (each undoable)."""
        names = self.panel.selected()
        if self.case is None or not names:
            self.window.report_error(InputError("run: select scenarios to run"), "Run scenario")
            return False
        return self._run_next(list(names))

    def _run_next(self, names: list[str]) -> bool:
        from app.ui.plan_actions import solve_step

        case, name = self.case, names[0]
        if not self.window._check_idle():
            return False
        before = case.scenarios[name]

        def done(run):
            if case is not self.window.case or case.scenarios.get(name) is not before:
                self.window.statusBar().showMessage(f"Scenario {name} changed while running: run it again", 10000)
                return
            old = sc.store_run(case, name, run)
            new = case.scenarios[name]
            self._push(f"Run scenario {name}", lambda: sc.put_scenario(case, new),
                       lambda: sc.put_scenario(case, old))
            self.window.statusBar().showMessage(f"Scenario {name}: " + ", ".join(
                f"{k} {v:.3g}" for k, v in list(new.summary.items())[:3]), 10000)
            if len(names) > 1:
                self._run_next(names[1:])

        step = solve_step(sc.evaluate_scenario, snapshot_for(case, name), name, title=f"scenario {name}")
        return self.window._run_step(f"Running scenario {name}", step, done)

    def sweep(self) -> bool:
        from app.sweep import store_sweep, sweep_scenario

        case, name = self.case, self.panel.current()
        if case is None or name is None:
            self.window.report_error(InputError("sweep: select a scenario"), "Sweep")
            return False
        if not self.window._check_idle():
            return False
        snap = snapshot_for(case, name)
        samples, seed, workers = self.panel.samples.value(), self.panel.seed.value(), self.panel.workers.value()

        def step(progress, cancelled):
            return sweep_scenario(snap, name, samples=samples, seed=seed, workers=workers,
                                  progress=progress, cancelled=cancelled)

        def done(sweep):
            if case is not self.window.case or name not in case.scenarios:
                return
            old = store_sweep(case, name, sweep)
            new = case.scenarios[name]
            self._push(f"Sweep scenario {name}", lambda: sc.put_scenario(case, new),
                       lambda: sc.put_scenario(case, old))
            self.window.statusBar().showMessage(
                f"Sweep of {name}: {sweep['n_samples']} samples in {sweep['seconds']:.1f} s", 10000)

        return self.window._run_step(f"Sweeping scenario {name} ({samples} samples)", step, done)

    # -- compare -------------------------------------------------------------
    def compare(self, names: Optional[list[str]] = None):
        """Open the compare view on 2-4 run scenarios (the selection by default)."""
        from viewer.compare_view import MAX_SCENARIOS, CompareView

        names = names or self.panel.selected()
        case = self.case
        try:
            if case is None or not 2 <= len(names) <= MAX_SCENARIOS:
                raise InputError(f"compare: select 2 to {MAX_SCENARIOS} scenarios")
            missing = [n for n in names if not case.scenarios[n].surfaces]
            if missing:
                raise InputError(f"compare: run {', '.join(missing)} first")
        except InputError as exc:
            self.window.report_error(exc, "Compare scenarios")
            return None
        if self.compare_view is None:
            self.compare_view = CompareView()
            self.compare_view.setWindowFlag(Qt.Window)
            self.compare_view.difference_requested.connect(self._difference)
            self.compare_view.resize(1400, 800)
        surfaces = [next(iter(case.scenarios[n].surfaces.values())) for n in names]
        self.compare_view.show()
        self.compare_view.show_scenarios(names, surfaces, sc.compare_scenarios(case, names))
        self.compare_view.raise_()
        return self.compare_view

    def _difference(self, a: str, b: str) -> None:
        case = self.case
        if case is None or a == b:
            self.compare_view.set_difference(None)
            return
        key = next(iter(case.scenarios[b].surfaces), "skin")
        try:
            diff = sc.difference_map(case, a, b, key)
        except InputError as exc:
            self.window.report_error(exc, "Difference map")
            return
        if "ffr_difference" in diff.point_data:
            d = diff["ffr_difference"]
            title = f"FFR {b} - {a}: {d.min():+.3f} to {d.max():+.3f}"
        else:
            title = f"{b} - {a}: max {diff['difference_mm'].max():.2f} mm"
        self.compare_view.set_difference(diff, title)


def install(window) -> ScenarioController:
    """Add the Scenarios dock (tabbed with the plan dock) and Plan > Scenarios."""
    controller = ScenarioController(window)
    window.scenarios = controller
    dock = QDockWidget("Scenarios", window)
    dock.setObjectName("dock_scenario_panel")
    dock.setWidget(controller.panel)
    window.addDockWidget(Qt.RightDockWidgetArea, dock)
    window.tabifyDockWidget(window.plan_dock, dock)
    window.scenario_dock = dock

    def focus():
        dock.show()
        dock.raise_()
        controller.panel.list.setFocus(Qt.ShortcutFocusReason)

    plan_menu = menu(window, "&Plan")
    plan_menu.addSeparator()
    plan_menu.addAction(make_action(window, "scenario_panel", "&Scenarios and compare...", focus, "Ctrl+Alt+S",
                                    "What-if scenarios of the case: branch, run, sweep, compare side by side"))
    # The window offers no case hook; it refreshes the segmentation panel on every case change and swap.
    original = window.seg_panel.set_case

    def set_case(case) -> None:
        original(case)
        controller.panel.fill(window.case)

    window.seg_panel.set_case = set_case
    controller.panel.fill(window.case)
    return controller
