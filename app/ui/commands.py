"""Undoable changes to a case (QUndoCommand wrappers of the pipeline's apply/restore)."""
from __future__ import annotations

from typing import Any, Optional

from PySide6.QtGui import QUndoCommand

from app.case import Case
from app.pipeline import StepResult, apply_result, restore_item


class ApplyStepCommand(QUndoCommand):
    """Store a step's result in the case; undo puts back what it replaced.

    Parameters
    ----------
    case : Case
        The case the result belongs to.
    result : StepResult
        Output of ``step_segment``/``step_mesh``.
    text : str
        Shown in Edit > Undo/Redo ("Segment bone").
    """

    def __init__(self, case: Case, result: StepResult, text: str) -> None:
        super().__init__(text)
        self.case = case
        self.result = result
        self._previous: Optional[tuple[Any, Any]] = None

    def redo(self) -> None:
        self._previous = apply_result(self.case, self.result)

    def undo(self) -> None:
        restore_item(self.case, self.result.kind, self.result.name, self._previous)
