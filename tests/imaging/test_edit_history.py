"""Undo/redo of label edits: exact restoration, memory, budget, misuse."""
from __future__ import annotations

import time

import numpy as np
import pytest

from imaging import segment_tools as st
from imaging.edit_history import EditHistory, RegionChange
from imaging.errors import InputError, SegmentationError
from imaging.segment import segment_threshold
from imaging.volume import Geometry, LabelInfo, LabelMap


@pytest.fixture(scope="module")
def bone(demo_case_path):
    from imaging.invesalius import load_invesalius_project

    ct = load_invesalius_project(demo_case_path, load_surfaces=False).volume
    return segment_threshold(ct, (226, 3071), name="bone")


def lps(geometry: Geometry, i, j, k) -> np.ndarray:
    return (geometry.index_to_lps() @ [i, j, k, 1])[:3]


def twenty_edits(lab: LabelMap) -> list:
    """20 mixed edits as (description, function of the current label map -> new content)."""
    g = lab.geometry
    rng = np.random.default_rng(5)
    edits = []
    for n in range(6):
        c = lps(g, *rng.integers([60, 60, 10], [200, 200, 100]))
        edits.append((f"paint {n}", lambda m, c=c: st.sphere_change(m, c, 6.0)))
    edits += [
        ("erase", lambda m: st.sphere_change(m, lps(g, 128, 128, 100), 8.0, value=0)),
        ("disk axial", lambda m: st.disk_change(m, lps(g, 100, 90, 40), 12.0, axis="axial")),
        ("disk coronal", lambda m: st.disk_change(m, lps(g, 150, 90, 40), 9.0, axis="coronal", value=0)),
        ("close", lambda m: st.morphology(m, "close", 1.5)),
        ("keep largest", lambda m: st.keep_islands(m, "largest")),
        ("erode", lambda m: st.morphology(m, "erode", 1.0)),
        ("fill axial", lambda m: st.fill_holes(m, view="axial")),
        ("scissors", lambda m: st.scissors(m, [[-30, -30], [30, -30], [0, 40]],
                                           st.orthographic_view_matrix("coronal", lps(g, 128, 128, 54)))),
        ("union", lambda m: st.combine(m, st.paint_sphere(LabelMap(np.zeros_like(m.array), g), lps(g, 40, 40, 20),
                                                          10.0))),
        ("subtract", lambda m: st.combine(m, st.paint_sphere(LabelMap(np.zeros_like(m.array), g),
                                                             lps(g, 128, 60, 30), 15.0), "subtract")),
        ("split keep upper", lambda m: st.split_by_plane(m, lps(g, 0, 0, 8), (0, 0.2, 1))[0].array),
        ("dilate", lambda m: st.morphology(m, "dilate", 1.0)),
        ("hollow", lambda m: st.morphology(m, "hollow", 3.0)),
        ("rename", lambda m: LabelMap(m.array.copy(), g, {1: LabelInfo("shell", (1.0, 0.0, 0.0))})),
    ]
    assert len(edits) == 20
    return edits


def test_twenty_mixed_edits_undo_redo_exact(bone):
    lab = LabelMap(bone.array.copy(), bone.geometry, dict(bone.labels))
    history = EditHistory()
    states = [(lab.content_hash(), lab.labels[1].name)]
    for description, edit in twenty_edits(lab):
        assert history.apply(lab, edit(lab), description) is not None, description
        states.append((lab.content_hash(), lab.labels[1].name))
    assert len(history) == 20 and len(set(states)) == 21
    assert lab.labels[1].name == "shell"
    # Memory: the 20 edits, several of them over the whole skull, take far
    # less than the 20 copies a naive undo stack would keep (7.1 MB each).
    copies = 20 * lab.array.nbytes
    assert history.nbytes < copies / 20
    for n in range(20, 0, -1):
        history.undo(lab)
        assert (lab.content_hash(), lab.labels[1].name) == states[n - 1]
    np.testing.assert_array_equal(lab.array, bone.array)
    assert not history.can_undo and history.undo(lab) is None
    for n in range(1, 21):
        history.redo(lab)
        assert (lab.content_hash(), lab.labels[1].name) == states[n]
    assert history.redo(lab) is None


def test_new_edit_clears_redo_and_noop_keeps_it(bone):
    lab = LabelMap(bone.array.copy(), bone.geometry)
    history = EditHistory()
    c = lps(lab.geometry, 128, 128, 54)
    history.apply(lab, st.sphere_change(lab, c, 5.0), "a")
    history.apply(lab, st.sphere_change(lab, c, 7.0), "b")
    history.undo(lab)
    assert history.apply(lab, st.sphere_change(lab, c, 5.0), "same as now") is None  # no voxel changes
    assert history.can_redo
    history.apply(lab, st.sphere_change(lab, c, 5.0, value=0), "c")
    assert not history.can_redo and history.descriptions() == (["a", "c"], [])


def test_budget_drops_oldest_but_keeps_latest():
    g = Geometry((0.5, 0.5, 0.5))
    lab = LabelMap(np.zeros((60, 60, 60), np.uint8), g)
    rng = np.random.default_rng(0)
    history = EditHistory(max_bytes=60_000)
    for n in range(3):  # random voxels are incompressible: about 27 kB each, bit-packed
        history.apply(lab, (rng.random(lab.array.shape) > 0.5).astype(np.uint8), f"noise {n + 1}")
    assert history.nbytes <= 60_000 and 1 <= len(history) <= 2
    assert history.descriptions()[0][-1] == "noise 3"
    tiny = EditHistory(max_bytes=1)
    tiny.apply(lab, np.zeros_like(lab.array), "clear")
    assert len(tiny) == 1  # the latest edit stays undoable
    steps = EditHistory(max_steps=2)
    for n in range(4):
        steps.apply(lab, st.sphere_change(lab, (5 + 3 * n, 5, 5), 2.0, value=n + 2), f"s{n}")
    assert steps.descriptions()[0] == ["s2", "s3"]


def test_changes_behind_the_history_are_refused(bone):
    lab = LabelMap(bone.array.copy(), bone.geometry)
    history = EditHistory()
    center = lps(lab.geometry, 128, 128, 54)
    history.apply(lab, st.sphere_change(lab, center, 5.0), "paint")
    k, j, i = 54, 128, 128
    lab.array[k, j, i] = 7  # a tool wrote without the history
    before = lab.array.copy()
    with pytest.raises(SegmentationError, match="outside the edit history"):
        history.undo(lab)
    np.testing.assert_array_equal(lab.array, before)
    with pytest.raises(InputError, match="does not match"):
        history.apply(lab, lab.array[:-1], "bad")
    with pytest.raises(InputError, match="outside the label map"):
        history.apply(lab, RegionChange((250, 0, 0), np.ones((10, 10, 10), np.uint8)), "bad")


def test_brush_strokes_on_a_large_label_map_are_cheap():
    """The benchmark scenario, smaller: 100 strokes of 5 mm on 512x512x300 at 0.5 mm."""
    g = Geometry((0.5, 0.5, 0.5))
    lab = LabelMap(np.zeros((300, 512, 512), np.uint8), g)
    rng = np.random.default_rng(1)
    history = EditHistory(max_bytes=200 << 20)
    extent = np.array([511, 511, 299]) * 0.5
    for n in range(100):
        history.apply(lab, st.sphere_change(lab, rng.random(3) * extent, 5.0, value=0 if n % 4 == 3 else 1))
    painted = lab.array.copy()
    assert history.nbytes < 2 << 20  # each stroke: a 21^3 box, bit-packed and compressed
    worst = 0.0
    for _ in range(100):
        t0 = time.perf_counter()
        history.undo(lab)
        worst = max(worst, time.perf_counter() - t0)
    assert worst < 0.1 and not lab.array.any()
    for _ in range(100):
        history.redo(lab)
    np.testing.assert_array_equal(lab.array, painted)
