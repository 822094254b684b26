"""Memory-light undo/redo of label map edits.

An edit is stored as the XOR of the old and new voxels over the bounding box
of the changed voxels only, compressed (bit-packed when the difference is
binary, then zlib). XOR makes one buffer serve both directions: applying it
to the box after the edit gives the box before, and vice versa. A CRC of the
box on each side catches a label map that was changed behind the history's
back, so undo either restores exact voxels or refuses.

Typical use (a brush stroke in a slice view)::

    history = EditHistory(max_bytes=200 << 20)
    history.apply(labelmap, sphere_change(labelmap, center_lps, 5.0), "Paint")
    history.undo(labelmap)
    history.redo(labelmap)
"""
from __future__ import annotations

import copy
import logging
import zlib
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from imaging.errors import InputError, SegmentationError
from imaging.segment_common import bounding_box
from imaging.volume import LabelInfo, LabelMap

log = logging.getLogger(__name__)

#: Fast zlib level: label differences are long runs that compress well anyway.
ZLIB_LEVEL = 1
_OVERHEAD_BYTES = 200  # rough per-edit Python object cost, counted in nbytes


@dataclass
class RegionChange:
    """New values for a box of a label array (what a brush or local tool produces).

    Parameters
    ----------
    start_zyx : (int, int, int)
        Array index of the box's first voxel.
    values : numpy.ndarray
        New content of the box (same dtype as the label array).
    """

    start_zyx: tuple[int, int, int]
    values: np.ndarray

    @property
    def box(self) -> tuple[slice, slice, slice]:
        return tuple(slice(s, s + n) for s, n in zip(self.start_zyx, self.values.shape))  # type: ignore[return-value]

    def apply_to(self, array: np.ndarray) -> None:
        """Write the values into ``array`` in place."""
        array[self.box] = self.values


def _changed_box(before: np.ndarray, after: np.ndarray) -> Optional[tuple[slice, slice, slice]]:
    """Bounding box of the voxels that differ, or None."""
    return bounding_box(before != after)


def _crc(block: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(block).view(np.uint8))


@dataclass
class Edit:
    """One recorded change: a compressed XOR difference over a box."""

    description: str
    start_zyx: tuple[int, int, int]
    shape_zyx: tuple[int, int, int]
    dtype: np.dtype
    packed: bool
    payload: bytes
    crc_before: int
    crc_after: int
    changed_voxels: int
    labels_before: dict[int, LabelInfo] = field(default_factory=dict)
    labels_after: dict[int, LabelInfo] = field(default_factory=dict)

    @property
    def box(self) -> tuple[slice, slice, slice]:
        return tuple(slice(s, s + n) for s, n in zip(self.start_zyx, self.shape_zyx))  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        """Memory held by this edit (payload plus a fixed object overhead), bytes."""
        return len(self.payload) + _OVERHEAD_BYTES

    @classmethod
    def record(cls, before: np.ndarray, after: np.ndarray, start_zyx, description: str = "",
               labels_before=None, labels_after=None) -> "Edit":
        """Encode the change from ``before`` to ``after`` (two boxes of equal shape)."""
        xor = np.bitwise_xor(before, after)
        changed = int(np.count_nonzero(xor))
        packed = bool(xor.size and xor.min() >= 0 and xor.max() <= 1)  # a 0/1 difference: one bit a voxel
        raw = np.packbits(xor.view(np.uint8) if xor.dtype.itemsize == 1 else xor.astype(np.uint8)) \
            if packed else np.ascontiguousarray(xor)
        return cls(description, tuple(int(s) for s in start_zyx), tuple(int(n) for n in xor.shape),
                   xor.dtype, packed, zlib.compress(raw.tobytes(), ZLIB_LEVEL), _crc(before), _crc(after),
                   changed, copy.deepcopy(labels_before or {}), copy.deepcopy(labels_after or {}))

    def _xor(self) -> np.ndarray:
        raw = zlib.decompress(self.payload)
        n = int(np.prod(self.shape_zyx))
        if self.packed:
            bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n)
            return bits.astype(self.dtype, copy=False).reshape(self.shape_zyx)
        return np.frombuffer(raw, dtype=self.dtype).reshape(self.shape_zyx)

    def _flip(self, labelmap: LabelMap, expect_crc: int, labels: dict, what: str) -> None:
        block = labelmap.array[self.box]
        if _crc(block) != expect_crc:
            raise SegmentationError(f"cannot {what} {self.description!r}: the label map was changed "
                                    "outside the edit history")
        np.bitwise_xor(block, self._xor(), out=block)
        if labels:
            labelmap.labels = copy.deepcopy(labels)

    def undo(self, labelmap: LabelMap) -> None:
        """Put back the voxels before the edit (in place)."""
        self._flip(labelmap, self.crc_after, self.labels_before, "undo")

    def redo(self, labelmap: LabelMap) -> None:
        """Re-apply the edit (in place)."""
        self._flip(labelmap, self.crc_before, self.labels_after, "redo")


NewContent = Union[LabelMap, np.ndarray, RegionChange]


class EditHistory:
    """Undo/redo stack of label map edits within a memory budget.

    Parameters
    ----------
    max_bytes : int
        Budget for the stored edits, bytes. The oldest edits are dropped to
        stay under it; the most recent edit is always kept.
    max_steps : int, optional
        Keep at most this many undo steps.
    """

    def __init__(self, max_bytes: int = 256 << 20, max_steps: Optional[int] = None) -> None:
        self.max_bytes = int(max_bytes)
        self.max_steps = max_steps
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []

    # -- state --------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Memory held by all undo and redo steps, bytes."""
        return sum(e.nbytes for e in self._undo) + sum(e.nbytes for e in self._redo)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def __len__(self) -> int:
        return len(self._undo)

    def descriptions(self) -> tuple[list[str], list[str]]:
        """Undo and redo step names, most recent last / next redo last."""
        return [e.description for e in self._undo], [e.description for e in self._redo]

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()

    # -- editing ------------------------------------------------------------
    def apply(self, labelmap: LabelMap, new: NewContent, description: str = "") -> Optional[Edit]:
        """Write new content into ``labelmap`` in place and record it.

        Parameters
        ----------
        labelmap : LabelMap
            The edited label map (its array is modified in place).
        new : LabelMap, numpy.ndarray or RegionChange
            A whole new label map / array of the same shape, or the new
            values of a box. A LabelMap also brings its label table.
        description : str
            Shown as "Undo <description>".

        Returns
        -------
        Edit or None
            The recorded edit; None if no voxel changed (nothing recorded,
            the redo steps are kept).

        Raises
        ------
        InputError
            If the new content does not fit the label map's array.
        """
        array = labelmap.array
        labels_after = None
        if isinstance(new, LabelMap):
            labels_after = new.labels if new.labels != labelmap.labels else None
            new = new.array
        if isinstance(new, RegionChange):
            box = new.box
            values = new.values
            if any(b.stop > n or b.start < 0 for b, n in zip(box, array.shape)) or values.ndim != 3:
                raise InputError(f"edit {description!r}: region {new.start_zyx} + {values.shape} "
                                 f"outside the label map {array.shape}")
            sub = _changed_box(array[box], values)
            if sub is None:
                return None
            start = tuple(b.start + s.start for b, s in zip(box, sub))
            after = values[sub]
        else:
            new = np.asarray(new)
            if new.shape != array.shape:
                raise InputError(f"edit {description!r}: new array {new.shape} does not match "
                                 f"the label map {array.shape}")
            sub = _changed_box(array, new)
            if sub is None and labels_after is None:
                return None
            sub = sub or (slice(0, 1),) * 3
            start = tuple(s.start for s in sub)
            after = new[sub]
        target = tuple(slice(s, s + n) for s, n in zip(start, after.shape))
        before = array[target]
        after = after.astype(array.dtype, copy=False)
        edit = Edit.record(before, after, start, description,
                           labelmap.labels if labels_after is not None else None, labels_after)
        array[target] = after
        if labels_after is not None:
            labelmap.labels = copy.deepcopy(labels_after)
        self._undo.append(edit)
        self._redo.clear()
        self._trim()
        return edit

    def undo(self, labelmap: LabelMap) -> Optional[Edit]:
        """Undo the most recent edit in place; None if there is nothing to undo."""
        if not self._undo:
            return None
        edit = self._undo[-1]
        edit.undo(labelmap)
        self._redo.append(self._undo.pop())
        return edit

    def redo(self, labelmap: LabelMap) -> Optional[Edit]:
        """Redo the last undone edit in place; None if there is nothing to redo."""
        if not self._redo:
            return None
        edit = self._redo[-1]
        edit.redo(labelmap)
        self._undo.append(self._redo.pop())
        return edit

    def _trim(self) -> None:
        while len(self._undo) > 1 and (
            self.nbytes > self.max_bytes or (self.max_steps is not None and len(self._undo) > self.max_steps)
        ):
            dropped = self._undo.pop(0)
            log.info("edit history: dropped %r to stay within %d bytes", dropped.description, self.max_bytes)
