"""Undoable label edits and landmark changes for the main window's undo stack.

A label edit is stored as an ``imaging.edit_history.Edit``: the compressed
XOR of the changed box only, so a brush stroke on a 512 x 512 x 300 label map
costs a few hundred bytes, not a copy of the volume. Undo and redo flip that
box in place and announce the change through ``Case.changed``.
"""
from __future__ import annotations

import copy
from typing import Optional

from PySide6.QtGui import QUndoCommand

from app.case import Case
from imaging.edit_history import Edit, EditHistory, NewContent
from imaging.landmarks import Landmark
from imaging.volume import LabelMap


def record_edit(labelmap: LabelMap, new: NewContent, description: str) -> Optional[Edit]:
    """Write ``new`` into ``labelmap`` in place and return the recorded edit (None: nothing changed).

    One throw-away ``EditHistory`` does the box search and compression, so the
    GUI records exactly what the command-line history records.
    """
    return EditHistory().apply(labelmap, new, description)


class LabelEditCommand(QUndoCommand):
    """An edit of one label map, already applied when pushed.

    Parameters
    ----------
    case : Case
        The case holding the label.
    name : str
        Label name (``Case.labels`` key).
    labelmap : LabelMap
        The edited object (kept: a later step may replace the case's entry,
        but the undo stack undoes that step first).
    edit : Edit
        The change, as recorded by :func:`record_edit`.
    """

    def __init__(self, case: Case, name: str, labelmap: LabelMap, edit: Edit) -> None:
        super().__init__(edit.description)
        self.case = case
        self.name = name
        self.labelmap = labelmap
        self.edit = edit
        self._applied = True  # QUndoStack.push calls redo(): the edit is already in the label map

    @property
    def nbytes(self) -> int:
        """Memory held by this step, bytes."""
        return self.edit.nbytes

    def redo(self) -> None:
        if self._applied:
            self._applied = False
        else:
            self.edit.redo(self.labelmap)
        self.case.changed.emit("label", self.name)

    def undo(self) -> None:
        self.edit.undo(self.labelmap)
        self.case.changed.emit("label", self.name)


class LandmarkCommand(QUndoCommand):
    """Set (or, with ``landmark=None``, remove) one landmark; undo restores the previous one."""

    def __init__(self, case: Case, name: str, landmark: Optional[Landmark], text: str) -> None:
        super().__init__(text)
        self.case = case
        self.name = name
        self.landmark = None if landmark is None else copy.copy(landmark)
        self.previous = copy.copy(case.landmarks.get(name))

    def _put(self, landmark: Optional[Landmark]) -> None:
        if landmark is None:
            self.case.remove_landmark(self.name)
        else:
            self.case.set_landmark(copy.copy(landmark))

    def redo(self) -> None:
        self._put(self.landmark)

    def undo(self) -> None:
        self._put(self.previous)
