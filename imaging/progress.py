"""Progress and cancellation callables passed to long pipeline steps."""
from __future__ import annotations

from concurrent.futures import CancelledError
from typing import Callable, Optional

ProgressFn = Callable[[float, str], None]
CancelledFn = Callable[[], bool]


def no_progress(fraction: float, message: str) -> None:
    """Progress sink that ignores updates."""


def never_cancelled() -> bool:
    """Cancel flag that is never set."""
    return False


def check_cancelled(cancelled: Optional[CancelledFn]) -> None:
    """Raise ``CancelledError`` if the user asked to stop."""
    if cancelled is not None and cancelled():
        raise CancelledError("cancelled by user")
