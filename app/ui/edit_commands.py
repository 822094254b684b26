"""Undoable label edits and landmark changes for the main window's undo stack.

A label edit is stored as an ``imaging.edit_history.Edit``: the compressed
XOR of the changed box only, so a brush stroke on a 512 x 512 x 300 label map
costs a few hundred bytes, not a copy of the volume. Undo and redo flip that
box in place and announce the change through ``Case.changed``.
"""
from __future__ import annotations

import copy
import hashlib
import threading
from typing import Optional

import numpy as np
from PySide6.QtGui import QUndoCommand

from app.case import Case, Provenance, item_id
from imaging.edit_history import Edit, EditHistory, NewContent
from imaging.landmarks import Landmark
from imaging.volume import LabelMap

#: Label maps larger than this are hashed for their provenance on a background thread
#: (sha256 of a 512 x 512 x 300 label takes ~0.3-1 s: too long a pause after each stroke).
SYNC_HASH_BYTES = 16 << 20
_pending: dict[int, threading.Thread] = {}  # id(provenance) -> thread filling its output_hash


def fill_output_hash(provenance: Provenance, labelmap: LabelMap) -> None:
    """Set ``provenance.output_hash`` to the label's content hash (now, or soon for big labels).

    The background thread reads the live array: every label edit first calls
    :func:`wait_for_hashes`, so nothing changes it while it is hashed.
    """
    if labelmap.array.nbytes <= SYNC_HASH_BYTES:
        provenance.output_hash = labelmap.content_hash()
        return

    def run() -> None:
        provenance.output_hash = _streamed_hash(labelmap)

    thread = threading.Thread(target=run, name="label-hash", daemon=True)
    _pending[id(provenance)] = thread
    thread.start()


def _streamed_hash(labelmap: LabelMap) -> str:
    """``labelmap.content_hash()`` (``imaging.volume.hash_array``), fed to sha256 in 4 MB slices.

    Same digest (a test checks it); the slices keep the GUI thread responsive,
    where one ``tobytes`` copy of a big label would hold the interpreter lock.
    """
    a = labelmap.array
    if not a.flags.c_contiguous:
        return labelmap.content_hash()
    h = hashlib.sha256()
    h.update(str(a.dtype).encode())
    h.update(str(a.shape).encode())
    flat = a.reshape(-1).view(np.uint8)
    for start in range(0, flat.size, 1 << 22):
        h.update(flat[start:start + (1 << 22)])
    g = labelmap.geometry
    h.update(np.round(np.array(g.spacing_xyz), 6).tobytes())
    h.update(np.round(np.array(g.origin_xyz), 6).tobytes())
    h.update(np.round(g.direction, 6).tobytes())
    return h.hexdigest()


def wait_for_hashes() -> None:
    """Let background label hashes finish (call before changing any label in place)."""
    for key in list(_pending):
        thread = _pending.pop(key, None)
        if thread is not None:
            thread.join()


def output_hash(provenance: Provenance) -> str:
    """``provenance.output_hash``, waiting for a background hash still running."""
    thread = _pending.pop(id(provenance), None)
    if thread is not None:
        thread.join()
    return provenance.output_hash


def record_edit(labelmap: LabelMap, new: NewContent, description: str) -> Optional[Edit]:
    """Write ``new`` into ``labelmap`` in place and return the recorded edit (None: nothing changed).

    One throw-away ``EditHistory`` does the box search and compression, so the
    GUI records exactly what the command-line history records.
    """
    wait_for_hashes()
    return EditHistory().apply(labelmap, new, description)


def label_input(case: Case, name: str, labelmap: LabelMap) -> dict[str, str]:
    """Provenance input entry of a label as it is now: its last record's output hash, else its content hash."""
    last = case.provenance.get(item_id("label", name))
    digest = output_hash(last) if last is not None else ""
    digest = digest or labelmap.content_hash()
    return {"id": item_id("label", name), "hash": digest}


def edit_provenance(case: Case, name: str, labelmap: LabelMap, op: str, params: dict,
                    inputs: Optional[list] = None) -> Provenance:
    """Record of an edit of label ``name`` as ``twinplan edit --op op`` writes it.

    Call before the edit is applied: the default input is the label as it is
    now (its last record's output hash, else its content hash).
    """
    if inputs is None:
        inputs = [label_input(case, name, labelmap)]
    return Provenance(f"edit_{op}", dict(params, label=name, out_label=name), inputs)


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
    provenance : Provenance, optional
        How the label was edited (operation and parameters as ``twinplan
        edit`` records them, so a replay can redo it); its ``output_hash`` is
        filled in here. Undo puts back the label's previous record.
    """

    def __init__(self, case: Case, name: str, labelmap: LabelMap, edit: Edit,
                 provenance: Optional[Provenance] = None) -> None:
        super().__init__(edit.description)
        self.case = case
        self.name = name
        self.labelmap = labelmap
        self.edit = edit
        self._applied = True  # QUndoStack.push calls redo(): the edit is already in the label map
        self._iid = item_id("label", name)
        self.previous_provenance = case.provenance.get(self._iid)
        self.provenance = provenance
        if provenance is not None:
            fill_output_hash(provenance, labelmap)

    def _set_provenance(self, provenance: Optional[Provenance]) -> None:
        if provenance is not None:
            self.case.provenance[self._iid] = provenance
        elif self.provenance is not None:
            self.case.provenance.pop(self._iid, None)

    @property
    def nbytes(self) -> int:
        """Memory held by this step, bytes."""
        return self.edit.nbytes

    def redo(self) -> None:
        if self._applied:
            self._applied = False
        else:
            wait_for_hashes()
            self.edit.redo(self.labelmap)
        if self.provenance is not None:
            self._set_provenance(self.provenance)
        self.case.changed.emit("label", self.name)

    def undo(self) -> None:
        wait_for_hashes()
        self.edit.undo(self.labelmap)
        if self.provenance is not None:
            self._set_provenance(self.previous_provenance)
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
