"""Named pipeline steps: run headless (CLI, tests) or in a GUI worker.

A step reads the case, computes, and returns a ``StepResult`` without
touching the case; ``apply_result`` stores it (the GUI does that on its own
thread through the undo stack). Import builds a new case.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from app.case import Case, Provenance
from imaging.dicom import load_dicom_series, scan_dicom_folder
from imaging.errors import InputError
from imaging.meshing import mesh_labelmap, mesh_report
from imaging.progress import CancelledFn, ProgressFn, no_progress
from imaging.segment import presets_for, segment_threshold
from imaging.volume_io import is_volume_file, load_volume_file

DEMO_CASE = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
INVESALIUS_SUFFIXES = (".inv3",)


@dataclass
class StepResult:
    """Output of one step, ready to be applied to a case."""

    kind: str  # "volume" | "label" | "surface"
    name: str
    item: Any
    provenance: Provenance
    report: dict = field(default_factory=dict)


def _file_digest(paths: list[str]) -> str:
    """Hash of the raw input files (names excluded: they mean nothing)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def import_scan(
    path: str | os.PathLike,
    *,
    series_uid: Optional[str] = None,
    downsample: int = 1,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> Case:
    """Build a new case from a DICOM folder/file or an InVesalius ``.inv3`` project.

    ``downsample`` > 1 loads a DICOM series reduced by that factor (see
    ``app.memory_guard.load_series_downsampled``), recorded in the provenance.

    Raises
    ------
    InputError
        Missing path, no image series, unknown series UID, corrupt data.
    """
    progress = progress or no_progress
    src = Path(path)
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    if src.is_file() and src.suffix.lower() in INVESALIUS_SUFFIXES:
        return _import_invesalius(src, progress, cancelled)
    if src.is_file() and is_volume_file(src):
        case = Case(name=src.name.split(".")[0] or "case")
        volume = load_volume_file(src)
        source = {"id": "file:" + src.name, "hash": _file_digest([str(src)])}
        case.set_item("volume", "ct", volume, Provenance("import_volume_file", {"path": str(src)}, [source]))
        progress(1.0, "Volume loaded")
        return case
    t0 = time.perf_counter()
    scan = scan_dicom_folder(src, progress=lambda f, m: progress(0.15 * f, m), cancelled=cancelled)
    series = scan.find(series_uid)
    load_progress = lambda f, m: progress(0.15 + 0.85 * f, m)  # noqa: E731
    params = {"path": str(src), "series_uid": series.series_uid}
    if downsample != 1:  # the downsampled loader checks the factor
        from app.memory_guard import load_series_downsampled

        volume = load_series_downsampled(series, downsample, progress=load_progress, cancelled=cancelled)
        params["downsample"] = int(downsample)
    else:
        volume = load_dicom_series(series, progress=load_progress, cancelled=cancelled)
    case = Case(name=src.stem or "case")
    params["seconds"] = round(time.perf_counter() - t0, 3)
    prov = Provenance("import_dicom", params,
                      inputs=[{"id": "file:" + series.series_uid, "hash": _file_digest(series.files)}])
    case.set_item("volume", "ct", volume, prov)
    return case


def _import_invesalius(src: Path, progress: ProgressFn, cancelled: Optional[CancelledFn]) -> Case:
    from imaging.invesalius import load_invesalius_project

    t0 = time.perf_counter()
    project = load_invesalius_project(src, progress=progress, cancelled=cancelled)
    case = Case(name=src.stem)
    source = {"id": "file:" + src.name, "hash": _file_digest([str(src)])}
    params = {"path": str(src), "seconds": round(time.perf_counter() - t0, 3)}
    case.set_item("volume", "ct", project.volume, Provenance("import_invesalius", params, [source]))
    for i, mask in enumerate(project.masks):
        name = f"inv_mask_{i}"
        p = Provenance("import_invesalius_mask", {"path": str(src), "index": i}, [source])
        case.set_item("label", name, mask, p)
    for i, (_name, surface) in enumerate(project.surfaces):
        p = Provenance("import_invesalius_surface", {"path": str(src), "index": i}, [source])
        case.set_item("surface", f"inv_surface_{i}", surface, p)
    return case


def step_segment(
    case: Case,
    *,
    label: str,
    hu_range: Optional[tuple[float, float]] = None,
    preset: Optional[str] = None,
    volume: Optional[str] = None,
    keep_largest: bool = True,
    fill_holes: bool = True,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> StepResult:
    """Threshold a volume of the case into the label ``label``.

    Give ``hu_range`` or a ``preset`` name (see ``imaging.segment.presets_for``).
    """
    if not label or not label.strip():
        raise InputError("--label: a label name is required")
    vol_name = volume or case.primary_volume()[0]
    if vol_name not in case.volumes:
        raise InputError(f"--volume {vol_name}: no such volume in the case")
    if hu_range is None:
        presets = presets_for(case.volumes[vol_name])
        if preset not in presets:
            raise InputError(f"--preset {preset}: unknown preset (choose from {', '.join(sorted(presets))})")
        hu_range = presets[preset]
    t0 = time.perf_counter()
    params = {
        "label": label,
        "hu_range": [float(hu_range[0]), float(hu_range[1])],
        "preset": preset,
        "keep_largest": keep_largest,
        "fill_holes": fill_holes,
    }
    labelmap = segment_threshold(
        case.volumes[vol_name], hu_range, name=label, keep_largest=keep_largest,
        fill_holes=fill_holes, progress=progress, cancelled=cancelled,
    )
    voxels = labelmap.voxel_count(1)
    sx, sy, sz = labelmap.geometry.spacing_xyz
    report = {
        "label": label,
        "voxels": voxels,
        "volume_mm3": round(voxels * sx * sy * sz, 3),
        "hu_range": params["hu_range"],
        "seconds": round(time.perf_counter() - t0, 4),
    }
    prov = Provenance("segment_threshold", params, [case.input_ref("volume", vol_name)])
    return StepResult("label", label, labelmap, prov, report)


def step_mesh(
    case: Case,
    *,
    label: str,
    smoothing_iterations: int = 20,
    passband: float = 0.05,
    decimate: float = 0.0,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> StepResult:
    """Surface of a label of the case (stored as surface ``label``)."""
    if label not in case.labels:
        known = ", ".join(case.labels) or "none"
        raise InputError(f"--label {label}: no such label in the case (labels: {known})")
    t0 = time.perf_counter()
    params = {"label": label, "smoothing_iterations": smoothing_iterations,
              "passband": passband, "decimate": decimate}
    surface = mesh_labelmap(
        case.labels[label], 1, smoothing_iterations=smoothing_iterations, passband=passband,
        decimate=decimate, progress=progress, cancelled=cancelled,
    )
    report = mesh_report(surface, time.perf_counter() - t0)
    prov = Provenance("mesh_labelmap", params, [case.input_ref("label", label)])
    return StepResult("surface", label, surface, prov, report)


def apply_result(case: Case, result: StepResult) -> Optional[tuple[Any, Optional[Provenance]]]:
    """Store a step's result in the case; return what it replaced (for undo)."""
    store = {"volume": case.volumes, "label": case.labels, "surface": case.surfaces}[result.kind]
    previous = None
    if result.name in store:
        previous = (store[result.name], case.provenance.get(f"{result.kind}/{result.name}"))
    case.set_item(result.kind, result.name, result.item, result.provenance)
    return previous


def restore_item(case: Case, kind: str, name: str, previous) -> None:
    """Undo ``apply_result``: put back the replaced item, or remove the new one."""
    if previous is None:
        case.remove_item(kind, name)
    else:
        item, prov = previous
        case.set_item(kind, name, item)
        if prov is not None:
            case.provenance[f"{kind}/{name}"] = prov
