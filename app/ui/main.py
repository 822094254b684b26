"""Entry point of ``twinplan-gui``: ``twinplan-gui [DICOM folder | .inv3 | .twin]``."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="twinplan-gui", description="TwinPlan surgical planning workstation")
    parser.add_argument("path", nargs="?", help="DICOM folder, InVesalius .inv3 file or TwinPlan .twin project")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser.parse_args(list(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Start the GUI, optionally opening ``path``; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments without the program name (default ``sys.argv[1:]``).
    """
    args = _parse(sys.argv[1:] if argv is None else argv)
    from app.logsetup import setup_logging

    # Rotating file under the user's data folder; every record scrubbed of patient identifiers.
    log_file = setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from app.ui.main_window import MainWindow
    from app.ui.theme import apply_dark_theme

    # Qt 6 scales by the screen's device pixel ratio; pass fractional factors (125 %, 150 %)
    # through unrounded so text and the VTK views get the monitor's real resolution.
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "twinplan-gui"])
    logging.getLogger(__name__).info("TwinPlan GUI started; log file %s", log_file)
    app.setApplicationName("TwinPlan")
    app.setOrganizationName("TwinPlan")
    apply_dark_theme(app)
    window = MainWindow()
    previous_hook = sys.excepthook

    def excepthook(exc_type, exc, tb) -> None:
        # Exceptions escaping a Qt slot land here: show them, keep running.
        if issubclass(exc_type, KeyboardInterrupt):
            previous_hook(exc_type, exc, tb)
            return
        window.report_error(exc.with_traceback(tb), "Internal error")

    sys.excepthook = excepthook
    window.show()
    if args.path:
        window.open_path(args.path)
    else:
        QTimer.singleShot(0, window.autosave.offer_recovery)  # after a crash: offer the autosave
    try:
        return app.exec()
    finally:
        sys.excepthook = previous_hook


if __name__ == "__main__":
    sys.exit(main())
