"""Which array axes a slice view shows, and how, in radiological convention.

A view is named by its anatomical plane. On screen:

- axial: viewed from the feet; patient left (+L) to the right, posterior down;
- coronal: viewed from the front; patient left to the right, superior up;
- sagittal: viewed from the patient's left; posterior to the right, superior up.

Slices are cut along the voxel axes (no resampling): each index axis is
matched to the LPS axis its direction column points along most. For the usual
axis-aligned CT that is exact; for an oblique acquisition the view is the
nearest orthogonal one, as in most PACS viewers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VIEWS = ("axial", "coronal", "sagittal")

#: LPS axis (0 L, 1 P, 2 S) normal to each view.
_NORMAL = {"axial": 2, "coronal": 1, "sagittal": 0}
#: (LPS axis, sign) pointing screen-right and screen-down in each view.
_RIGHT = {"axial": (0, 1), "coronal": (0, 1), "sagittal": (1, 1)}
_DOWN = {"axial": (1, 1), "coronal": (2, -1), "sagittal": (2, -1)}
#: Letter of the +/- direction of each LPS axis.
_LETTERS = {0: ("L", "R"), 1: ("P", "A"), 2: ("S", "I")}


@dataclass(frozen=True)
class ViewAxes:
    """How one view maps voxel indices (i, j, k) to screen rows and columns.

    ``*_axis`` are index axes (0 = i/x, 1 = j/y, 2 = k/z); ``*_flip`` says the
    index runs against the screen direction.
    """

    view: str
    normal_axis: int
    row_axis: int
    row_flip: bool
    col_axis: int
    col_flip: bool
    right_lps_axis: int
    down_lps_axis: int
    letters: dict  # edge ("left", "right", "top", "bottom") -> letter


def index_axis_of_lps(direction: np.ndarray) -> tuple[list[int], list[int]]:
    """For each LPS axis, the index axis closest to it and the sign between them.

    Parameters
    ----------
    direction : (3, 3) array
        Columns are the i, j, k index axes in LPS.

    Returns
    -------
    axis, sign : list of int
        ``axis[lps]`` is an index axis; ``sign[lps]`` is +1 or -1.
    """
    d = np.asarray(direction, dtype=float)
    axis = [-1, -1, -1]
    sign = [1, 1, 1]
    # Greedy by magnitude so that two LPS axes never claim the same index axis.
    order = np.dstack(np.unravel_index(np.argsort(-np.abs(d), axis=None), d.shape))[0]
    used: set[int] = set()
    for lps, idx in order:
        if axis[lps] == -1 and idx not in used:
            axis[lps] = int(idx)
            sign[lps] = 1 if d[lps, idx] >= 0 else -1
            used.add(int(idx))
    return axis, sign


def view_axes(view: str, direction: np.ndarray) -> ViewAxes:
    """The axes shown by ``view`` for a volume with this direction matrix."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    axis, sign = index_axis_of_lps(direction)
    right_lps, right_sign = _RIGHT[view]
    down_lps, down_sign = _DOWN[view]
    right_pos, right_neg = _LETTERS[right_lps]
    down_pos, down_neg = _LETTERS[down_lps]
    if right_sign < 0:
        right_pos, right_neg = right_neg, right_pos
    if down_sign < 0:
        down_pos, down_neg = down_neg, down_pos
    return ViewAxes(
        view=view,
        normal_axis=axis[_NORMAL[view]],
        row_axis=axis[down_lps],
        row_flip=sign[down_lps] * down_sign < 0,
        col_axis=axis[right_lps],
        col_flip=sign[right_lps] * right_sign < 0,
        right_lps_axis=right_lps,
        down_lps_axis=down_lps,
        letters={"right": right_pos, "left": right_neg, "bottom": down_pos, "top": down_neg},
    )


def _array_axis(index_axis: int) -> int:
    """Array axis (z, y, x order) of an index axis (i, j, k)."""
    return 2 - index_axis


def display_slice(array: np.ndarray, axes: ViewAxes, index: int) -> np.ndarray:
    """2D view of a (z, y, x) array at slice ``index``, rows/columns as on screen.

    Returns a numpy view (no copy) whenever possible.
    """
    sl = [slice(None)] * 3
    sl[_array_axis(axes.normal_axis)] = int(index)
    plane = array[tuple(sl)]
    # The two remaining array axes, in array order.
    remaining = [a for a in range(3) if a != _array_axis(axes.normal_axis)]
    order = (remaining.index(_array_axis(axes.row_axis)), remaining.index(_array_axis(axes.col_axis)))
    plane = plane.transpose(order)
    if axes.row_flip:
        plane = plane[::-1, :]
    if axes.col_flip:
        plane = plane[:, ::-1]
    return plane


def slice_count(dims_xyz: tuple[int, int, int], axes: ViewAxes) -> int:
    """Number of slices along the view normal."""
    return int(dims_xyz[axes.normal_axis])


def display_shape(dims_xyz: tuple[int, int, int], axes: ViewAxes) -> tuple[int, int]:
    """(rows, columns) of a displayed slice."""
    return int(dims_xyz[axes.row_axis]), int(dims_xyz[axes.col_axis])


def pixel_spacing(spacing_xyz: tuple[float, float, float], axes: ViewAxes) -> tuple[float, float]:
    """(row height, column width) of a displayed pixel, mm."""
    return float(spacing_xyz[axes.row_axis]), float(spacing_xyz[axes.col_axis])


def display_to_index(
    axes: ViewAxes, dims_xyz: tuple[int, int, int], row: int, col: int, index: int
) -> tuple[int, int, int]:
    """Voxel index (i, j, k) of a displayed pixel on slice ``index``."""
    ijk = [0, 0, 0]
    ijk[axes.normal_axis] = int(index)
    ijk[axes.row_axis] = dims_xyz[axes.row_axis] - 1 - int(row) if axes.row_flip else int(row)
    ijk[axes.col_axis] = dims_xyz[axes.col_axis] - 1 - int(col) if axes.col_flip else int(col)
    return ijk[0], ijk[1], ijk[2]


def index_to_display(
    axes: ViewAxes, dims_xyz: tuple[int, int, int], ijk: tuple[int, int, int]
) -> tuple[int, int, int]:
    """(row, column, slice) at which voxel ``ijk`` is shown."""
    row = ijk[axes.row_axis]
    col = ijk[axes.col_axis]
    if axes.row_flip:
        row = dims_xyz[axes.row_axis] - 1 - row
    if axes.col_flip:
        col = dims_xyz[axes.col_axis] - 1 - col
    return int(row), int(col), int(ijk[axes.normal_axis])
