"""Menus, toolbar, recent files and the Help texts of the main window."""
from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QObject, QSettings, Signal, qVersion
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QMenu, QStyle, QToolBar

from app import __version__
from imaging.windowing import WINDOW_PRESETS
from app.ui.panels import labelled_row

if TYPE_CHECKING:  # pragma: no cover
    from app.ui.main_window import MainWindow

MAX_RECENT = 8
#: Window/level combo entries: shown text -> key of WINDOW_PRESETS (or special).
WL_CHOICES = {
    "Soft tissue (W400 L40)": "soft_tissue",
    "Bone (W2000 L400)": "bone",
    "Brain (W80 L40)": "brain",
    "Lung (W1500 L-600)": "lung",
    "Auto (1-99 %)": "auto",
    "Custom": "custom",
}

SHORTCUTS = [
    ("Ctrl+O", "Open DICOM folder"),
    ("Ctrl+Shift+O", "Open TwinPlan project (.twin)"),
    ("Ctrl+S / Ctrl+Shift+S", "Save project / Save as"),
    ("Ctrl+E", "Export mesh (STL, PLY, OBJ, VTP)"),
    ("Ctrl+Z / Ctrl+Shift+Z", "Undo / Redo segmentation and mesh steps"),
    ("Ctrl+1 ... Ctrl+5", "Window/level: soft tissue, bone, brain, lung, auto"),
    ("Ctrl+R", "Toggle volume rendering"),
    ("Ctrl+P", "Soft-tissue plan panel (move a segment, see the predicted skin)"),
    ("F6 / F7 / F8 / F9 / F10", "Layout: four-up / axial / coronal / sagittal / 3D"),
    ("Esc", "Cancel the running task"),
    ("Ctrl+Q", "Quit"),
    ("Left click / drag", "Set the crosshair (all views follow)"),
    ("Right drag", "Window (left-right) and level (up-down)"),
    ("Wheel, Up/Down, PgUp/PgDn", "Page slices (Shift+wheel: 5 at a time)"),
    ("Ctrl+wheel, middle drag, R", "Zoom, pan, reset zoom"),
    ("Double-click a slice view", "Maximise it / back to four-up"),
    ("3D: left / middle / right drag", "Rotate / pan / zoom"),
]


class RecentFiles(QObject):
    """Most recently opened paths, kept in QSettings under ``recent_files``."""

    changed = Signal()

    def __init__(self, settings: QSettings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings

    def paths(self) -> list[str]:
        value = self.settings.value("recent_files", [])
        if isinstance(value, str):  # QSettings returns a bare string for one entry
            value = [value]
        return [str(v) for v in value or []]

    def add(self, path: str | Path) -> None:
        p = str(Path(path).resolve())
        paths = [p] + [q for q in self.paths() if q != p]
        self.settings.setValue("recent_files", paths[:MAX_RECENT])
        self.changed.emit()

    def clear(self) -> None:
        self.settings.setValue("recent_files", [])
        self.changed.emit()


def _action(window, text: str, slot: Callable, shortcut=None, tip: str = "") -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
    if tip:
        action.setStatusTip(tip)
    keys = action.shortcut().toString(QKeySequence.NativeText)
    action.setToolTip((tip or text.replace("&", "").rstrip(".")) + (f" ({keys})" if keys else ""))
    action.triggered.connect(lambda _checked=False: slot())
    return action


def build_menus(w: "MainWindow") -> dict[str, QAction]:
    """Create the menu bar and toolbar of ``w``; returns the actions by name."""
    a: dict[str, QAction] = {}
    a["open_dicom"] = _action(w, "Open &DICOM folder...", w.open_dicom_dialog, QKeySequence.Open,
                              "Import a CT series from a folder")
    a["open_inv3"] = _action(w, "Open &InVesalius project...", w.open_invesalius_dialog,
                             tip="Import an InVesalius .inv3 project")
    a["open_project"] = _action(w, "Open &project...", w.open_project_dialog, "Ctrl+Shift+O",
                                "Open a TwinPlan project folder (.twin)")
    a["open_demo"] = _action(w, "Open d&emo case", w.open_demo, tip="The Cranium head CT")
    a["save"] = _action(w, "&Save project", w.save_project, QKeySequence.Save,
                        "Save the case to its .twin project folder")
    a["save_as"] = _action(w, "Save project &as...", w.save_project_as, "Ctrl+Shift+S",
                           "Save the case to a new .twin project folder")
    a["export_mesh"] = _action(w, "&Export mesh...", w.export_mesh, "Ctrl+E",
                               "Write a surface as STL, PLY, OBJ or VTP (LPS mm)")
    a["screenshot"] = _action(w, "Save screens&hot...", w.save_screenshot_dialog,
                              tip="Save the window, 3D view included, as a PNG image")
    a["quit"] = _action(w, "&Quit", w.close, QKeySequence.Quit, "Close TwinPlan (asks about unsaved changes)")
    a["cancel"] = _action(w, "Cancel task", w.runner.cancel, "Esc", "Stop the running task; nothing changes")
    w.addAction(a["cancel"])

    undo = w.undo_stack.createUndoAction(w, "&Undo")
    undo.setShortcuts([QKeySequence("Ctrl+Z")])
    redo = w.undo_stack.createRedoAction(w, "&Redo")
    redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
    undo.setToolTip("Undo the last segmentation or mesh step (Ctrl+Z)")
    redo.setToolTip("Redo the step just undone (Ctrl+Shift+Z)")
    a["undo"], a["redo"] = undo, redo

    file_menu = w.menuBar().addMenu("&File")
    for key in ("open_dicom", "open_inv3", "open_project", "open_demo"):
        file_menu.addAction(a[key])
    w.recent_menu = QMenu("Open &recent", w)
    file_menu.addMenu(w.recent_menu)
    file_menu.addSeparator()
    for key in ("save", "save_as", "export_mesh", "screenshot"):
        file_menu.addAction(a[key])
    file_menu.addSeparator()
    file_menu.addAction(a["quit"])
    w.recent.changed.connect(lambda: fill_recent_menu(w))
    fill_recent_menu(w)

    edit_menu = w.menuBar().addMenu("&Edit")
    edit_menu.addAction(undo)
    edit_menu.addAction(redo)

    view_menu = w.menuBar().addMenu("&View")
    wl_menu = view_menu.addMenu("&Window/level")
    for n, (text, key) in enumerate(list(WL_CHOICES.items())[:5]):
        act = _action(w, text, lambda t=text: w.wl_combo.setCurrentText(t), f"Ctrl+{n + 1}",
                      f"Window/level preset {text}")
        wl_menu.addAction(act)
    a["volume_rendering"] = _action(w, "&Volume rendering", w.toggle_volume_rendering, "Ctrl+R")
    view_menu.addAction(a["volume_rendering"])
    layout_menu = view_menu.addMenu("&Layout")
    for n, mode in enumerate(("four-up", "axial", "coronal", "sagittal", "3d")):
        act = _action(w, mode.capitalize() if mode != "3d" else "3D", lambda m=mode: w.set_layout(m),
                      f"F{6 + n}", "Show all four views" if mode == "four-up" else f"Maximise the {mode} view")
        layout_menu.addAction(act)
        a[f"layout_{mode}"] = act
    view_menu.addSeparator()
    for dock in w.docks:
        view_menu.addAction(dock.toggleViewAction())

    plan_menu = w.menuBar().addMenu("&Plan")
    a["plan_panel"] = _action(w, "Soft-tissue &plan panel", w.focus_plan_panel, "Ctrl+P",
                              "Move a bone segment and see the predicted skin")
    a["plan_prepare"] = _action(w, "P&repare live prediction", w.prepare_live_plan,
                                tip="Mesh the soft tissue and solve the unit responses for live what-if")
    a["plan_refine"] = _action(w, "Re&fine (neo-Hookean)", w.refine_plan,
                               tip="Re-solve the current move with the nonlinear (neo-Hookean) model")
    a["plan_apply"] = _action(w, "&Apply prediction", w.apply_plan, tip="Store the predicted skin in the case")
    for key in ("plan_panel", "plan_prepare", "plan_refine", "plan_apply"):
        plan_menu.addAction(a[key])

    help_menu = w.menuBar().addMenu("&Help")
    a["shortcuts"] = _action(w, "&Keyboard shortcuts", w.show_shortcuts, QKeySequence.HelpContents,
                             "Every keyboard shortcut and mouse gesture")
    a["about"] = _action(w, "&About TwinPlan", w.show_about,
                         tip="Version of TwinPlan and of the libraries it runs on (VTK, dolfinx, Qt)")
    help_menu.addAction(a["shortcuts"])
    help_menu.addAction(a["about"])

    icons = {"open_dicom": QStyle.SP_DirOpenIcon, "open_project": QStyle.SP_DialogOpenButton,
             "save": QStyle.SP_DialogSaveButton}
    for key, icon in icons.items():
        a[key].setIcon(w.style().standardIcon(icon))
    undo.setIcon(w.style().standardIcon(QStyle.SP_ArrowBack))
    redo.setIcon(w.style().standardIcon(QStyle.SP_ArrowForward))
    bar = QToolBar("Main", w)
    bar.setObjectName("main_toolbar")
    bar.setMovable(False)
    bar.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
    for key in ("open_dicom", "open_project", "save"):
        bar.addAction(a[key])
    bar.addSeparator()
    bar.addAction(undo)
    bar.addAction(redo)
    bar.addSeparator()
    w.wl_combo = QComboBox()
    w.wl_combo.setObjectName("window_level_preset")
    w.wl_combo.addItems(list(WL_CHOICES))
    bar.addWidget(labelled_row("Window/level", w.wl_combo))
    bar.addSeparator()
    a["volume_rendering"].setCheckable(True)
    bar.addAction(a["volume_rendering"])
    w.addToolBar(bar)
    return a


def fill_recent_menu(w: "MainWindow") -> None:
    """Rebuild File > Open recent from the settings."""
    w.recent_menu.clear()
    paths = w.recent.paths()
    for path in paths:
        act = w.recent_menu.addAction(Path(path).name or path)
        act.setToolTip(path)
        act.triggered.connect(lambda _checked=False, p=path: w.open_path(p))
    if paths:
        w.recent_menu.addSeparator()
        w.recent_menu.addAction("Clear list", w.recent.clear)
    w.recent_menu.setEnabled(bool(paths))


def window_level_for(choice: str, array) -> tuple[float, float] | None:
    """(window, level) of a combo choice; ``auto`` uses the 1-99 % percentiles."""
    key = WL_CHOICES.get(choice, "custom")
    if key in WINDOW_PRESETS:
        return WINDOW_PRESETS[key]
    if key == "auto" and array is not None:
        import numpy as np

        sample = array[:: max(1, array.shape[0] // 16)]
        lo, hi = np.percentile(sample, [1, 99])
        return max(float(hi - lo), 1.0), float(lo + hi) / 2
    return None


def menu_shortcuts(window) -> list[tuple[str, str]]:
    """(keys, "Menu > Command") of every menu command with a shortcut, extensions included."""
    rows: list[tuple[str, str]] = []

    def walk(menu: QMenu, path: str) -> None:
        for act in menu.actions():
            if act.menu() is not None:
                walk(act.menu(), f"{path} > {act.text().replace('&', '')}")
            elif not act.isSeparator():
                keys = ", ".join(k.toString(QKeySequence.NativeText) for k in act.shortcuts())
                if keys:
                    rows.append((keys, f"{path} > {act.text().replace('&', '').rstrip('.')}"))

    for top in window.menuBar().actions():
        if top.menu() is not None:
            walk(top.menu(), top.text().replace("&", ""))
    return rows


def shortcuts_html(window=None) -> str:
    """Help > Keyboard shortcuts as an HTML table (every menu command of ``window`` too)."""
    def table(items) -> str:
        return "<table>" + "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in items) + "</table>"

    html = "<h4>Views and mouse</h4>" + table(SHORTCUTS)
    if window is not None:
        html += "<h4>Menu commands</h4>" + table(menu_shortcuts(window))
    return html


def _dist_version(*names: str) -> str:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return ""


def about_html() -> str:
    """Help > About: TwinPlan and the versions of the libraries it runs on."""
    import vtk

    dolfinx = _dist_version("fenics-dolfinx")
    if not dolfinx:
        try:
            import dolfinx as _dolfinx

            dolfinx = _dolfinx.__version__
        except Exception:  # noqa: BLE001 -- optional; any import failure means "not available"
            dolfinx = "not installed"
    versions = {
        "Python": platform.python_version(),
        "Qt": qVersion(),
        "PySide6": pyside_version,
        "VTK": vtk.vtkVersion.GetVTKVersion(),
        "pyvista": _dist_version("pyvista"),
        "SimpleITK": _dist_version("SimpleITK", "simpleitk"),
        "numpy": _dist_version("numpy"),
        "dolfinx": dolfinx,
    }
    rows = "".join(f"<tr><td>{k}</td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in versions.items())
    return (f"<h3>TwinPlan {__version__}</h3><p>Surgical planning on patient digital twins.</p>"
            f"<p>Not a medical device: for research and planning support only.</p><table>{rows}</table>")
