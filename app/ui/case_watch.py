"""Call extension code whenever the main window shows a case or its case changes.

The main window refreshes its Segmentation panel on both occasions
(``set_case`` and every ``Case.changed``); extensions chain onto that call
instead of each tracking the window's case themselves.
"""
from __future__ import annotations

from typing import Callable


def on_case_refresh(window, callback: Callable[[], None]) -> None:
    """Run ``callback()`` after each refresh of ``window``'s item list (and once now)."""
    original = window.seg_panel.set_case

    def set_case(case) -> None:
        original(case)
        callback()

    window.seg_panel.set_case = set_case
    callback()
