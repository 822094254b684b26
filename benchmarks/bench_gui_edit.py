"""GUI edit path: a brush stroke ended and pushed on the undo stack, then undone, on 512x512x300.

What the segment editor does on mouse release (``app.ui.edit_tools.Stroke.finish``,
``record_edit``, ``LabelEditCommand`` with its provenance record) against a
naive editor that keeps a full copy of the label per stroke. Absolute goals:
each stroke end and each undo under 100 ms (interactive), the stack of 100
strokes under 200 MB.
"""
from __future__ import annotations

import os
import time

import numpy as np

from imaging.volume import Geometry, LabelMap

STROKES = 100
DABS = 20  # dabs per stroke: a 20 mm drag with a 4 mm brush at radius/4 spacing
RADIUS_MM = 4.0
MB = float(1 << 20)


def _app():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.instance() or QGuiApplication([])


def run(repeat: int = 3) -> list[dict]:
    _app()
    from PySide6.QtGui import QUndoStack

    from app.case import Case, Provenance
    from app.ui.edit_commands import LabelEditCommand, edit_provenance, output_hash, record_edit
    from app.ui.edit_tools import Stroke
    from imaging.segment_tools import disk_change

    geom = Geometry((0.5, 0.5, 0.6))
    label = LabelMap(np.zeros((300, 512, 512), np.uint8), geom)
    case = Case("bench")
    case.set_item("label", "edit", label, Provenance("new_label", {}))
    stack = QUndoStack()
    rng = np.random.default_rng(0)
    starts = rng.random((STROKES, 3)) * [200.0, 200.0, 170.0] + [20.0, 20.0, 5.0]
    end_s, dab_s = [], []
    for start in starts:
        stroke = Stroke(label)
        t0 = time.perf_counter()
        centers = [start + [d, 0.0, 0.0] for d in np.linspace(0.0, 20.0, DABS)]
        for c in centers:
            stroke.add(disk_change(label, c, RADIUS_MM, axis="axial"))
        dab_s.append((time.perf_counter() - t0) / DABS)
        t0 = time.perf_counter()
        change = stroke.finish()
        prov = edit_provenance(case, "edit", label, "paint", {"centers_lps": [list(c) for c in centers],
                                                               "radius_mm": RADIUS_MM, "brush": "axial"})
        stack.push(LabelEditCommand(case, "edit", label, record_edit(label, change, "paint"), prov))
        end_s.append(time.perf_counter() - t0)
        output_hash(prov)  # a user pauses between strokes: the background hash is done by then
    stack_mb = sum(stack.command(i).nbytes for i in range(stack.count())) / MB
    undo_s = []
    for _ in range(STROKES):
        t0 = time.perf_counter()
        stack.undo()
        undo_s.append(time.perf_counter() - t0)
    assert not label.array.any()

    t0 = time.perf_counter()
    for _ in range(5):
        label.array.copy()  # the naive editor's snapshot per stroke
    naive_s = (time.perf_counter() - t0) / 5
    naive_mb = STROKES * label.array.nbytes / MB
    return [
        {"name": f"GUI stroke end ({DABS} dabs) -> undo step, max s (<0.1)", "ours_s": max(end_s),
         "baseline_s": 0.1, "ratio": 0.1 / max(end_s), "goal": 1.0},
        {"name": "GUI undo of a stroke, max s (<0.1)", "ours_s": max(undo_s), "baseline_s": 0.1,
         "ratio": 0.1 / max(undo_s), "goal": 1.0},
        {"name": f"GUI undo stack of {STROKES} strokes MB vs full copies", "ours_s": stack_mb,
         "baseline_s": naive_mb, "ratio": naive_mb / max(stack_mb, 1e-9), "goal": 1000.0},
        {"name": "GUI stroke end vs copying the label per stroke, s", "ours_s": float(np.median(end_s)),
         "baseline_s": naive_s, "ratio": naive_s / float(np.median(end_s)), "goal": None},
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:<60} {row['ours_s']:.4f} {row['baseline_s']:.4f} {row['ratio']:.1f}x")
