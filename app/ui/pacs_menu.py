"""File > Retrieve from PACS...: query a PACS node, retrieve a series, open it."""
from __future__ import annotations

from app.ui.extensions import make_action, menu


def install(window) -> None:
    action = make_action(window, "pacs", "Retrieve from &PACS...", lambda: open_pacs_dialog(window), "Ctrl+Shift+P",
                         "Find a study on a PACS (C-FIND), retrieve a series (C-GET/C-MOVE) and open it")
    file_menu = menu(window, "&File")
    actions = file_menu.actions()
    anchor = next((a for a in actions if a.menu() is not None), None)  # before "Open recent"
    file_menu.insertAction(anchor, action) if anchor is not None else file_menu.addAction(action)


def open_pacs_dialog(window):
    """Show the PACS dialog; a retrieved series is opened like a dropped folder."""
    from app.ui.pacs_dialog import PacsDialog

    dialog = getattr(window, "pacs_dialog", None)
    if dialog is None:
        dialog = PacsDialog(window, window.settings)
        dialog.retrieved.connect(window.open_path)
        window.pacs_dialog = dialog
    dialog.show()
    dialog.raise_()
    return dialog
