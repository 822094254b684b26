"""Segmentation editing: undo history memory and speed, brush and morphology cost.

Absolute targets (issue: 100 brush strokes on a 512x512x300 label map keep the
undo history under 200 MB and each undo under 100 ms) are rows with
``baseline_s`` = target and ``ratio`` = target / ours, goal 1.0.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from benchmarks.timing import best_time
from imaging.edit_history import EditHistory
from imaging.segment_tools import morphology, paint_sphere, sphere_change
from imaging.volume import Geometry, LabelMap

DEMO = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
STROKES = 100
RADIUS_MM = 5.0
MB = float(1 << 20)


def _strokes(seed: int = 0):
    geom = Geometry((0.5, 0.5, 0.6))
    lab = LabelMap(np.zeros((300, 512, 512), np.uint8), geom)
    extent = np.array([511 * 0.5, 511 * 0.5, 299 * 0.6])
    rng = np.random.default_rng(seed)
    centers = rng.random((STROKES, 3)) * extent
    values = [0 if n % 4 == 3 else 1 for n in range(STROKES)]  # every fourth stroke erases
    return lab, centers, values


def _history_rows() -> list[dict]:
    lab, centers, values = _strokes()
    history = EditHistory(max_bytes=200 << 20)
    t0 = time.perf_counter()
    for c, v in zip(centers, values):
        history.apply(lab, sphere_change(lab, c, RADIUS_MM, value=v), "brush")
    t_stroke = (time.perf_counter() - t0) / STROKES
    history_mb = history.nbytes / MB
    undo_s = []
    for _ in range(STROKES):
        t0 = time.perf_counter()
        history.undo(lab)
        undo_s.append(time.perf_counter() - t0)
    assert not lab.array.any()

    # Naive baseline: a full copy per stroke (what an undo stack of arrays keeps).
    lab2, centers, values = _strokes()
    snapshots = []
    t0 = time.perf_counter()
    for c, v in zip(centers[:10], values[:10]):
        snapshots.append(lab2.array.copy())
        lab2 = paint_sphere(lab2, c, RADIUS_MM, value=v)
    t_naive = (time.perf_counter() - t0) / 10
    naive_mb = STROKES * lab2.array.nbytes / MB
    return [
        {"name": f"undo history after {STROKES} 5 mm strokes on 512x512x300, MB (<200)",
         "ours_s": history_mb, "baseline_s": 200.0, "ratio": 200.0 / history_mb, "goal": 1.0},
        {"name": f"max undo time over {STROKES} strokes, s (<0.1)",
         "ours_s": max(undo_s), "baseline_s": 0.1, "ratio": 0.1 / max(undo_s), "goal": 1.0},
        {"name": "history MB vs full copies per stroke (memory ratio)",
         "ours_s": history_mb, "baseline_s": naive_mb, "ratio": naive_mb / history_mb, "goal": 1000.0},
        {"name": "brush stroke + record vs copy-and-paint, s/stroke",
         "ours_s": t_stroke, "baseline_s": t_naive, "ratio": t_naive / t_stroke, "goal": 20.0},
    ]


def _morphology_rows(repeat: int) -> list[dict]:
    if not DEMO.is_file():
        return []
    from imaging.invesalius import load_invesalius_project
    from imaging.segment import segment_threshold

    vol = load_invesalius_project(DEMO, load_surfaces=False).volume
    bone = segment_threshold(vol, (226, 3071), name="bone")
    sp = vol.geometry.spacing_xyz[::-1]
    mask = bone.array.astype(bool)
    # Same job both sides: voxels within 2 mm of the bone (centre distances).
    t_ours = best_time(lambda: morphology(bone, "dilate", 2.0, distance="centres"), repeat)
    t_base = best_time(lambda: ndimage.distance_transform_edt(~mask, sampling=sp) <= 2.0, repeat)
    rows = [{"name": "dilate Cranium bone 2 mm vs scipy EDT with sampling",
             "ours_s": t_ours, "baseline_s": t_base, "ratio": t_base / t_ours, "goal": 3.0}]
    history = EditHistory()
    closed = morphology(bone, "close", 2.0)
    history.apply(bone, closed, "close")
    t_undo = best_time(lambda: (history.undo(bone), history.redo(bone)), repeat) / 2
    rows.append({"name": "undo of a whole-skull close 2 mm, s (<0.1)",
                 "ours_s": t_undo, "baseline_s": 0.1, "ratio": 0.1 / t_undo, "goal": 1.0})
    return rows


def run(repeat: int = 3) -> list[dict]:
    return [*_history_rows(), *_morphology_rows(repeat)]


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:<64} {row['ours_s']:>10.4f} {row['baseline_s']:>10.4f} {row['ratio']:>9.1f}x "
              f">= {row['goal']}")
