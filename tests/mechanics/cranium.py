"""The Cranium demo CT with bone, skin and a Le Fort I-like maxilla label, built once per test session."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from app.case import Case


@functools.lru_cache(maxsize=1)
def cranium_case(demo_case_path: Path) -> Case:
    """Bone and skin thresholded with their presets; ``maxilla``: anterior bone below z = 20 mm."""
    from app.pipeline import apply_result, import_scan, step_segment

    case = import_scan(demo_case_path)
    apply_result(case, step_segment(case, label="bone", preset="bone"))
    apply_result(case, step_segment(case, label="skin", preset="skin"))
    add_maxilla(case)
    return case


def add_maxilla(case: Case) -> None:
    """Le Fort I-like segment ``maxilla``: anterior bone below z = 20 mm (maxilla and upper teeth)."""
    from imaging.volume import LabelInfo, LabelMap

    bone = case.labels["bone"]
    g = bone.geometry
    z = g.origin_xyz[2] + np.arange(bone.array.shape[0]) * g.spacing_xyz[2]
    y = g.origin_xyz[1] + np.arange(bone.array.shape[1]) * g.spacing_xyz[1]
    maxilla = (bone.array > 0) & (z[:, None, None] < 20.0) & (y[None, :, None] < -150.0)
    case.set_item("label", "maxilla", LabelMap(maxilla.astype(np.uint8), g, {1: LabelInfo("maxilla")}))
