"""Never lose work in the GUI: timed and after-step autosave, recovery after a crash.

``install(window)`` gives the window an :class:`AutosaveController`
(``window.autosave``). It autosaves the open case into this session's
recovery folder (``app.autosave``) every few minutes (setting
``autosave/interval_min``) and shortly after each finished step, on a
background thread, only when the case changed since the last autosave. On
start it looks for sessions of crashed runs and offers to restore them.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QVBoxLayout)

from app.autosave import (DEFAULT_INTERVAL_MIN, AutosaveSession, RecoveryEntry, discard_session,
                          find_crashed_sessions, recovery_dir, repair_project)
from app.project import load_case

log = logging.getLogger(__name__)

#: Seconds after a finished step before its autosave starts (steps in a row coalesce).
STEP_DELAY_S = 2.0


class AutosaveController(QObject):
    """Autosave and recovery for one main window."""

    saved = Signal(str)  # "" on success, else the error message (delivered on the GUI thread)

    def __init__(self, window, root: Optional[Path] = None) -> None:
        super().__init__(window)
        self.window = window
        self.root = Path(root) if root is not None else recovery_dir()
        self.session: Optional[AutosaveSession] = None
        try:
            self.session = AutosaveSession(self.root)
        except OSError as exc:  # read-only home: run without autosave, say so once
            log.warning("autosave disabled: %s", exc)
        self._saved_key = None
        self._last_step = ""
        self.last_saved_at = 0.0
        self.timer = QTimer(self)
        self.timer.setObjectName("autosave_timer")
        self.timer.timeout.connect(lambda: self.autosave_if_changed("timer"))
        self.step_timer = QTimer(self)
        self.step_timer.setSingleShot(True)
        self.step_timer.setInterval(int(STEP_DELAY_S * 1000))
        self.step_timer.timeout.connect(lambda: self.autosave_if_changed(self._last_step))
        self.saved.connect(self._on_saved)
        self.label = QLabel("")
        self.label.setObjectName("autosave_status")
        window.statusBar().addPermanentWidget(self.label)
        window.runner.started.connect(self._on_step_started)
        window.runner.finished.connect(self._on_step_finished)
        self.apply_settings()

    # -- settings ------------------------------------------------------------
    def interval_min(self) -> float:
        return float(self.window.settings.value("autosave/interval_min", DEFAULT_INTERVAL_MIN))

    def enabled(self) -> bool:
        return str(self.window.settings.value("autosave/enabled", "true")).lower() in ("true", "1")

    def apply_settings(self) -> None:
        """Restart the timer from the settings (after the settings dialog)."""
        self.timer.stop()
        if self.enabled() and self.session is not None:
            self.timer.start(max(1, int(self.interval_min() * 60_000)))

    # -- autosave ------------------------------------------------------------
    def _on_step_started(self, title: str) -> None:
        self._step_title = title

    def _on_step_finished(self, state: str) -> None:
        if state == "done":
            self._last_step = getattr(self, "_step_title", "a step")
            self.step_timer.start()  # after on_done has applied the result

    def _key(self):
        w = self.window
        return (id(w.case), w.undo_stack.index(), w.undo_stack.count(), len(w.case.labels), len(w.case.surfaces))

    def needs_autosave(self) -> bool:
        w = self.window
        if w.case is None or self.session is None or not self.enabled():
            return False
        return not w.undo_stack.isClean() and self._key() != self._saved_key

    def autosave_if_changed(self, reason: str = "timer", wait: bool = False) -> bool:
        """Start a background autosave if the case changed; True if one started."""
        if not self.needs_autosave() or self.session.busy:
            return False
        w = self.window
        key = self._key()
        started = self.session.save_in_background(
            w.case, source_path=w.source_path, project_path=w.project_path, last_step=reason,
            on_done=lambda error: self.saved.emit(error or ""))
        if started:
            self._saved_key = key
            if wait:
                self.session.wait(120)
        return started

    def _on_saved(self, error: str) -> None:
        if error:
            self._saved_key = None  # retry next time
            self.label.setText("Autosave failed")
            self.label.setToolTip(error)
            self.window.statusBar().showMessage(f"Autosave failed: {error}", 15000)
        else:
            # A permanent label, not a status message: it must not replace what the last step reported.
            self.last_saved_at = time.time()
            self.label.setText(f"Autosaved {time.strftime('%H:%M')}")
            self.label.setToolTip(f"Recovery copy of the case in {self.session.folder}")

    def close(self) -> None:
        """Clean exit: nothing to recover next time."""
        self.timer.stop()
        self.step_timer.stop()
        if self.session is not None:
            self.session.close()

    # -- recovery ------------------------------------------------------------
    def crashed_sessions(self) -> list[RecoveryEntry]:
        own = self.session.folder if self.session is not None else None
        return [e for e in find_crashed_sessions(self.root) if e.folder != own]

    def offer_recovery(self) -> Optional[RecoveryEntry]:
        """Ask about crashed sessions (``window.ask_recovery``); restore the chosen one."""
        entries = self.crashed_sessions()
        if not entries:
            return None
        choice = self.window.ask_recovery(entries)
        if choice is None:
            return None
        if choice == "discard":
            for entry in entries:
                discard_session(entry)
            self.window.statusBar().showMessage("Recovery data discarded", 8000)
            return None
        self.recover(choice)
        return choice

    def recover(self, entry: RecoveryEntry) -> bool:
        """Load ``entry``'s autosave on the worker and show it as an unsaved case."""
        w = self.window
        project = Path(entry.info["project_path"]) if entry.info.get("project_path") else None
        if project is not None:
            repair_project(project)  # a save killed midway leaves the project to put back

        def step(progress, cancelled):
            progress(0.2, "Reading the autosave")
            return load_case(entry.autosave)

        def done(case) -> None:
            w.set_case(case)
            w.project_path = project if project is not None and project.exists() else None
            source = entry.info.get("source_path")
            w.source_path = Path(source) if source else w.project_path
            w.undo_stack.resetClean()  # differs from anything saved: Save / close prompts apply
            w._update_title()
            self.autosave_if_changed("recovery")
            discard_session(entry)
            w.statusBar().showMessage(f"Recovered {entry.describe()}; save it to keep it", 15000)

        return w.runner.run("Recovering autosaved case", step, on_done=done,
                            on_error=lambda exc: w.report_error(exc, "Recover autosave"))


class RecoveryDialog(QDialog):
    """Lists crashed sessions: Recover the selected one, Discard all, or decide Later."""

    def __init__(self, entries: list[RecoveryEntry], parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("recovery_dialog")
        self.setWindowTitle("Recover unsaved work")
        self.entries = entries
        self.choice: Optional[RecoveryEntry | str] = None
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("TwinPlan did not shut down properly. These cases were autosaved:"))
        self.list = QListWidget()
        for entry in entries:
            item = QListWidgetItem(entry.describe())
            item.setData(Qt.UserRole, str(entry.folder))
            self.list.addItem(item)
        self.list.setCurrentRow(0)
        layout.addWidget(self.list)
        buttons = QDialogButtonBox()
        self.recover_button = QPushButton("Recover")
        self.recover_button.setToolTip("Open the selected autosave as an unsaved case")
        discard = QPushButton("Discard all")
        discard.setToolTip("Delete the recovery data of these sessions")
        later = QPushButton("Later")
        later.setToolTip("Keep the recovery data and ask again next start")
        buttons.addButton(self.recover_button, QDialogButtonBox.AcceptRole)
        buttons.addButton(discard, QDialogButtonBox.DestructiveRole)
        buttons.addButton(later, QDialogButtonBox.RejectRole)
        self.recover_button.clicked.connect(self._recover)
        discard.clicked.connect(self._discard)
        later.clicked.connect(self.reject)
        layout.addWidget(buttons)

    def _recover(self) -> None:
        self.choice = self.entries[max(0, self.list.currentRow())]
        self.accept()

    def _discard(self) -> None:
        self.choice = "discard"
        self.accept()


def ask_recovery(window, entries: list[RecoveryEntry]):
    """Modal question; an entry, ``"discard"`` or None (later). Tests replace ``window.ask_recovery``."""
    dialog = RecoveryDialog(entries, window)
    dialog.exec()
    return dialog.choice


def install(window) -> None:
    """Give ``window`` autosave; ``twinplan-gui`` calls ``window.autosave.offer_recovery()`` on start."""
    window.autosave = AutosaveController(window)
    if not hasattr(window, "ask_recovery"):
        window.ask_recovery = lambda entries: ask_recovery(window, entries)
    window.close_hooks = getattr(window, "close_hooks", []) + [window.autosave.close]
