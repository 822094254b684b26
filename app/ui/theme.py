"""Dark Fusion theme: images read better on a dark surround, as on reading-room monitors."""
from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

_COLORS = {
    QPalette.Window: "#2b2d33",
    QPalette.WindowText: "#e2e2e6",
    # Lighter than the window: Fusion draws check boxes and fields on Base and
    # outlines them with a darker Window, so a dark Base hides empty check boxes.
    QPalette.Base: "#3c3f47",
    QPalette.AlternateBase: "#353840",
    QPalette.ToolTipBase: "#3a3d45",
    QPalette.ToolTipText: "#e2e2e6",
    QPalette.Text: "#e2e2e6",
    QPalette.Button: "#363941",
    QPalette.ButtonText: "#e2e2e6",
    QPalette.BrightText: "#ff6060",
    QPalette.Link: "#6aa5ff",
    QPalette.Highlight: "#3d7edb",
    QPalette.HighlightedText: "#ffffff",
    QPalette.PlaceholderText: "#8a8d96",
}


def apply_dark_theme(app: QApplication) -> None:
    """Switch ``app`` to the Fusion style with a dark palette."""
    app.setStyle("Fusion")
    palette = QPalette()
    for role, color in _COLORS.items():
        palette.setColor(role, QColor(color))
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        palette.setColor(QPalette.Disabled, role, QColor("#75777f"))
    app.setPalette(palette)
