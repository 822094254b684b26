"""Edit > Preferences: the user's settings, kept in QSettings across runs.

Keys: ``autosave/enabled``, ``autosave/interval_min``, ``view/window_level``
(the preset applied when a scan opens) and ``log/verbose``. Window geometry,
dock layout and recent files are stored by the main window itself.
"""
from __future__ import annotations

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout,
                               QLabel)

from app.logsetup import log_file_path
from app.ui.extensions import make_action, menu
from app.ui.menus import WL_CHOICES

DEFAULTS = {"autosave/enabled": True, "autosave/interval_min": 3.0,
            "view/window_level": next(iter(WL_CHOICES)), "log/verbose": False}


def read_setting(settings, key: str):
    """``key`` from QSettings with its default and type (INI files give back strings)."""
    default = DEFAULTS[key]
    value = settings.value(key, default)
    if isinstance(default, bool):
        return str(value).lower() in ("true", "1")
    return type(default)(value)


class SettingsDialog(QDialog):
    """Form over the settings; OK writes them and applies them to the window."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.setObjectName("settings_dialog")
        self.setWindowTitle("Preferences")
        self.window_ = window
        s = window.settings
        form = QFormLayout(self)
        self.autosave = QCheckBox("Autosave the open case")
        self.autosave.setToolTip("Write the case to a recovery folder so a crash loses nothing")
        self.autosave.setChecked(read_setting(s, "autosave/enabled"))
        form.addRow(self.autosave)
        self.interval = QDoubleSpinBox()
        self.interval.setRange(0.5, 60.0)
        self.interval.setSuffix(" min")
        self.interval.setDecimals(1)
        self.interval.setToolTip("Time between autosaves (a finished step also autosaves)")
        self.interval.setValue(read_setting(s, "autosave/interval_min"))
        form.addRow("Autosave every", self.interval)
        self.window_level = QComboBox()
        self.window_level.addItems([c for c in WL_CHOICES if c != "Custom"])
        self.window_level.setCurrentText(read_setting(s, "view/window_level"))
        self.window_level.setToolTip("Window/level preset applied when a scan opens")
        form.addRow("Initial window/level", self.window_level)
        self.verbose = QCheckBox("Detailed log (debug messages)")
        self.verbose.setToolTip("Takes effect at the next start")
        self.verbose.setChecked(read_setting(s, "log/verbose"))
        form.addRow(self.verbose)
        where = QLabel(f"Log file: {log_file_path()}")
        where.setWordWrap(True)
        form.addRow(where)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def accept(self) -> None:
        s = self.window_.settings
        s.setValue("autosave/enabled", self.autosave.isChecked())
        s.setValue("autosave/interval_min", float(self.interval.value()))
        s.setValue("view/window_level", self.window_level.currentText())
        s.setValue("log/verbose", self.verbose.isChecked())
        s.sync()
        apply_settings(self.window_)
        super().accept()


def apply_settings(window) -> None:
    """Push the stored settings into the running window."""
    if hasattr(window, "autosave"):
        window.autosave.apply_settings()
    if window.case is None:
        window.wl_combo.setCurrentText(read_setting(window.settings, "view/window_level"))


def show_settings(window) -> SettingsDialog:
    dialog = SettingsDialog(window)
    dialog.open()
    return dialog


def install(window) -> None:
    """Edit > Preferences (Ctrl+,)."""
    action = make_action(window, "preferences", "&Preferences...", lambda: show_settings(window), "Ctrl+,",
                         "Autosave interval, initial window/level, log detail")
    menu(window, "&Edit").addAction(action)
    apply_settings(window)
