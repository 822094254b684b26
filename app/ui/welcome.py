"""Welcome screen: the first thing a new user sees while no case is open.

It takes the place of the slice/3D views (a page of a ``QStackedWidget``
around the window's central widget) and offers the demo case, the recent
projects and scans, and the open commands. Opening anything switches to the
views; closing the case brings the welcome screen back.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QStackedWidget,
                               QVBoxLayout, QWidget)

from app import __version__
from app.pipeline import DEMO_CASE

ICON = Path(__file__).resolve().parents[2] / "assets" / "twinplan-256.png"
INSTALLED_ICON = Path("/usr/share/icons/hicolor/256x256/apps/twinplan.png")


def app_icon() -> QIcon:
    """The TwinPlan icon (from the source tree or the installed package)."""
    for path in (ICON, INSTALLED_ICON):
        if path.is_file():
            return QIcon(str(path))
    return QIcon()


class WelcomePage(QWidget):
    """Demo case, recent files and open buttons; emits what the user picked."""

    open_requested = Signal(str)  # a path from the recent list
    action_requested = Signal(str)  # "demo" | "dicom" | "project" | "inv3"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("welcome_page")
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        column = QVBoxLayout()
        row.addLayout(column, 3)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)

        header = QHBoxLayout()
        logo = QLabel()
        logo.setPixmap(QPixmap(str(ICON if ICON.is_file() else INSTALLED_ICON)).scaled(
            72, 72, Qt.KeepAspectRatio, Qt.SmoothTransformation))
        header.addWidget(logo)
        title = QLabel(f"<h1>TwinPlan</h1><p>Surgical planning on patient digital twins &middot; "
                       f"version {__version__}</p>")
        header.addWidget(title, 1)
        column.addLayout(header)

        column.addWidget(QLabel("<h3>Start</h3>"))
        self.buttons: dict[str, QPushButton] = {}
        for key, text, tip in (
            ("demo", "Open the demo case", f"The Cranium head CT with jaw and teeth ({DEMO_CASE.name})"),
            ("dicom", "Open a DICOM folder...", "Import a CT series from a folder (Ctrl+O)"),
            ("project", "Open a TwinPlan project...", "Open a saved .twin project (Ctrl+Shift+O)"),
            ("inv3", "Open an InVesalius project...", "Import an InVesalius .inv3 project"),
        ):
            button = QPushButton(text)
            button.setObjectName(f"welcome_{key}")
            button.setToolTip(tip)
            button.setMinimumHeight(34)
            button.clicked.connect(lambda _c=False, k=key: self.action_requested.emit(k))
            column.addWidget(button)
            self.buttons[key] = button
        self.buttons["demo"].setEnabled(DEMO_CASE.is_file())
        if not DEMO_CASE.is_file():
            self.buttons["demo"].setToolTip("Install the demo: apt-get install invesalius-examples")

        column.addWidget(QLabel("<h3>Recent</h3>"))
        self.recent = QListWidget()
        self.recent.setObjectName("welcome_recent")
        self.recent.setIconSize(QSize(16, 16))
        self.recent.setToolTip("Double-click (or Enter) to open")
        self.recent.itemActivated.connect(self._activated)
        self.recent.setMaximumHeight(190)
        column.addWidget(self.recent)
        self.empty_hint = QLabel("Nothing opened yet: start with the demo case.")
        column.addWidget(self.empty_hint)
        tips = QLabel("Tips: drop a DICOM folder anywhere on the window. F1 lists every keyboard shortcut. "
                      "Your work is autosaved every few minutes and after each step.")
        tips.setWordWrap(True)
        tips.setObjectName("welcome_tips")
        column.addWidget(tips)

    def set_recent(self, paths: list[str]) -> None:
        """Fill the recent list; missing paths are shown but cannot be opened."""
        self.recent.clear()
        for path in paths:
            p = Path(path)
            kind = "project" if p.suffix == ".twin" else ("InVesalius" if p.suffix == ".inv3" else "scan")
            item = QListWidgetItem(f"{p.name or path}    ({kind}, {p.parent})")
            item.setData(Qt.UserRole, path)
            item.setToolTip(path)
            if not p.exists():
                item.setText(item.text() + "  - missing")
                item.setFlags(item.flags() & ~Qt.ItemIsEnabled)
            self.recent.addItem(item)
        self.empty_hint.setVisible(not paths)
        self.recent.setVisible(bool(paths))

    def _activated(self, item: QListWidgetItem) -> None:
        if item.flags() & Qt.ItemIsEnabled:
            self.open_requested.emit(item.data(Qt.UserRole))


class WelcomeController:
    """Swaps the window's central widget between the welcome page and the views."""

    def __init__(self, window) -> None:
        self.window = window
        self.page = WelcomePage()
        views = window.takeCentralWidget()
        self.stack = QStackedWidget()
        self.stack.setObjectName("central_stack")
        self.stack.addWidget(self.page)
        self.stack.addWidget(views)
        self.views_widget = views
        window.setCentralWidget(self.stack)
        actions = {"demo": window.open_demo, "dicom": window.open_dicom_dialog,
                   "project": window.open_project_dialog, "inv3": window.open_invesalius_dialog}
        self.page.action_requested.connect(lambda key: actions[key]())
        self.page.open_requested.connect(window.open_path)
        window.recent.changed.connect(self.refresh)
        window.case_hooks.append(self.on_case)
        self.refresh()
        self.on_case(window.case)

    def refresh(self) -> None:
        self.page.set_recent(self.window.recent.paths())

    def on_case(self, case) -> None:
        self.stack.setCurrentIndex(0 if case is None else 1)

    def show_views(self) -> None:
        self.stack.setCurrentIndex(1)

    @property
    def showing(self) -> bool:
        return self.stack.currentIndex() == 0


def install(window) -> None:
    """Put the welcome screen in front of the views until a case is open."""
    window.welcome = WelcomeController(window)
    window.setWindowIcon(app_icon())
