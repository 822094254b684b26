"""Feature modules that add docks, menus and actions to the main window.

Each name in ``UI_EXTENSIONS`` is a module with ``install(window)``; the main
window calls them in order at the end of its construction (before the saved
dock layout is restored). A feature adds itself here with one line, so the
main window does not grow with every feature.
"""
from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

UI_EXTENSIONS: tuple[str, ...] = (
    "app.ui.pacs_menu",
    "app.ui.export_dialog",
    "app.ui.edit_tools",
    "app.ui.fusion_wizard",
    "app.ui.landmark_panel",
    "app.ui.recovery",
    "app.ui.settings_dialog",
    "app.ui.welcome",
    "app.ui.scenario_panel",
    "app.ui.rehearsal_panel",
    "app.ui.thread_panel",
    "app.ui.ffr_panel",
)


def install_all(window) -> list[str]:
    """Install every extension into ``window``; returns the installed names."""
    installed = []
    for name in UI_EXTENSIONS:
        module = importlib.import_module(name)
        module.install(window)
        installed.append(name)
    return installed


def menu(window, title: str):
    """The top-level menu called ``title`` (e.g. "&File"), created before Help if missing."""
    bar = window.menuBar()
    for act in bar.actions():
        if act.text().replace("&", "") == title.replace("&", "") and act.menu() is not None:
            return act.menu()
    help_action = next((a for a in bar.actions() if a.text().replace("&", "") == "Help"), None)
    from PySide6.QtWidgets import QMenu

    new = QMenu(title, window)
    if help_action is not None:
        bar.insertMenu(help_action, new)
    else:
        bar.addMenu(new)
    return new


def make_action(window, name: str, text: str, slot, shortcut: str = "", tip: str = ""):
    """A QAction of ``window`` with shortcut and tooltip, listed in ``window.actions_by_name[name]``."""
    from PySide6.QtGui import QAction, QKeySequence

    action = QAction(text, window)
    action.setObjectName(f"action_{name}")
    if shortcut:
        action.setShortcut(QKeySequence(shortcut))
    action.setToolTip(tip or text.replace("&", "").rstrip("."))
    action.setStatusTip(action.toolTip())
    action.triggered.connect(lambda _checked=False: slot())
    window.actions_by_name[name] = action
    return action
