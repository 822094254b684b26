"""Save and load a case as a project folder ``NAME.twin/``, atomically.

Layout: ``case.json`` (manifest + provenance + scenarios), ``volumes/*.nrrd``,
``labels/*.nrrd``, ``surfaces/*.vtp``, ``scenarios/*.vtp`` (result surfaces). A save writes a sibling temporary
folder and renames it into place, so a crash never leaves a half-written
project: the old one stays until the new one is complete.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyvista as pv
import SimpleITK as sitk

from app.case import Case, Provenance, hash_surface
from imaging.errors import InputError
from imaging.landmarks import Landmark
from imaging.volume import Geometry, LabelInfo, LabelMap, Volume

FORMAT = "twinplan-case"
FORMAT_VERSION = 1


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "item"


def _write_image(array: np.ndarray, geometry: Geometry, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    geometry.apply_to_sitk(image)
    sitk.WriteImage(image, str(path), useCompression=True)


def _read_image(path: Path, geometry: Geometry) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: missing data file referenced by case.json")
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    return array


def save_case(case: Case, path: str | os.PathLike) -> Path:
    """Write ``case`` to the project folder ``path`` (``.twin`` added if absent).

    Parameters
    ----------
    case : Case
        The case to save.
    path : path-like
        Project folder; replaced atomically if it exists.

    Returns
    -------
    Path
        The project folder written.

    Raises
    ------
    InputError
        If the destination cannot be written (read-only, disk full...).
    """
    target = Path(path)
    if target.suffix != ".twin":
        target = target.with_name(target.name + ".twin")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise InputError(f"{parent}: cannot write project here ({exc.strerror})") from exc
    try:
        manifest = _write_contents(case, tmp)
        with open(tmp / "case.json", "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        backup = None
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            if backup.exists():
                shutil.rmtree(backup)
            os.rename(target, backup)
        os.rename(tmp, target)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"{target}: saving failed ({exc.strerror or exc}); the case is still open") from exc
    except RuntimeError as exc:  # SimpleITK/VTK writers report a full disk or a lost folder this way
        shutil.rmtree(tmp, ignore_errors=True)
        reason = _writer_reason(str(exc), parent)
        raise InputError(f"{target}: saving failed ({reason}); the case is still open") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _writer_reason(message: str, folder: Path) -> str:
    """A short reason for a failed image/mesh write (the writers' own text is long and technical)."""
    try:
        if shutil.disk_usage(folder).free < 1 << 20:
            return "No space left on device"
    except OSError:
        pass
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else "the image writer failed"


def _write_contents(case: Case, folder: Path) -> dict:
    for sub in ("volumes", "labels", "surfaces", "scenarios"):
        (folder / sub).mkdir()
    manifest: dict = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": case.name,
        "volumes": {},
        "labels": {},
        "surfaces": {},
        "provenance": {k: p.to_json() for k, p in case.provenance.items()},
        "landmarks": [{"name": m.name, "position_lps_mm": list(m.position_lps), "description": m.description}
                      for m in case.landmarks.values()],
    }
    for name, vol in case.volumes.items():
        rel = f"volumes/{_safe(name)}.nrrd"
        _write_image(vol.array, vol.geometry, folder / rel)
        manifest["volumes"][name] = {
            "file": rel,
            "geometry": vol.geometry.to_json(),
            "modality": vol.modality,
            "series_uid": vol.series_uid,
            "description": vol.description,
            "warnings": vol.warnings,
            "kind": vol.kind,
            "hash": vol.content_hash(),
        }
    for name, lab in case.labels.items():
        rel = f"labels/{_safe(name)}.nrrd"
        _write_image(lab.array, lab.geometry, folder / rel)
        manifest["labels"][name] = {
            "file": rel,
            "geometry": lab.geometry.to_json(),
            "labels": [
                {"value": v, "name": info.name, "color": list(info.color)}
                for v, info in lab.labels.items()
            ],
            "hash": lab.content_hash(),
        }
    for name, surf in case.surfaces.items():
        rel = f"surfaces/{_safe(name)}.vtp"
        surf.save(str(folder / rel), binary=True)
        manifest["surfaces"][name] = {"file": rel, "hash": case.content_hash("surface", name)}
    manifest["scenarios"] = _write_scenarios(case, folder)
    return manifest


def _write_scenarios(case: Case, folder: Path) -> list[dict]:
    """Scenario entries (a list: the order matters) with their result surfaces as VTP files."""
    entries = []
    for i, (name, scenario) in enumerate(case.scenarios.items()):
        entry = scenario.to_json()
        entry["surfaces"] = {}
        for key, surf in scenario.surfaces.items():
            rel = f"scenarios/{i:03d}_{_safe(name)}_{_safe(key)}.vtp"
            surf.save(str(folder / rel), binary=True)
            entry["surfaces"][key] = {"file": rel, "hash": hash_surface(surf)}
        entries.append(entry)
    return entries


def _read_scenarios(folder: Path, entries: list[dict]) -> dict:
    from app.scenarios import Scenario

    scenarios = {}
    for entry in entries:
        surfaces = {}
        for key, ref in entry.get("surfaces", {}).items():
            file = folder / ref["file"]
            if not file.is_file():
                raise InputError(f"{file}: missing data file referenced by case.json")
            surfaces[key] = pv.read(str(file))
            _check_hash(file, hash_surface(surfaces[key]), ref)
        scenario = Scenario.from_json(entry, surfaces)
        scenarios[scenario.name] = scenario
    return scenarios


def load_case(path: str | os.PathLike) -> Case:
    """Read a project folder written by :func:`save_case`.

    Raises
    ------
    InputError
        If the folder is not a TwinPlan project or a data file is missing or
        does not match its recorded hash.
    """
    folder = Path(path)
    manifest_path = folder / "case.json"
    if not manifest_path.is_file():
        raise InputError(f"{folder}: not a TwinPlan project (no case.json)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{manifest_path}: unreadable case manifest ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise InputError(f"{manifest_path}: not a TwinPlan case manifest")

    case = Case(manifest.get("name", folder.stem))
    for name, entry in manifest["volumes"].items():
        geom = Geometry.from_json(entry["geometry"])
        case.volumes[name] = Volume(
            _read_image(folder / entry["file"], geom),
            geom,
            modality=entry.get("modality", ""),
            series_uid=entry.get("series_uid", ""),
            description=entry.get("description", ""),
            warnings=list(entry.get("warnings", [])),
            kind=entry.get("kind", ""),
        )
        _check_hash(folder / entry["file"], case.volumes[name].content_hash(), entry)
    for name, entry in manifest["labels"].items():
        geom = Geometry.from_json(entry["geometry"])
        table = {int(e["value"]): LabelInfo(e["name"], tuple(e["color"])) for e in entry["labels"]}
        case.labels[name] = LabelMap(_read_image(folder / entry["file"], geom), geom, table)
        _check_hash(folder / entry["file"], case.labels[name].content_hash(), entry)
    for name, entry in manifest["surfaces"].items():
        file = folder / entry["file"]
        if not file.is_file():
            raise InputError(f"{file}: missing data file referenced by case.json")
        case.surfaces[name] = pv.read(str(file))
        _check_hash(file, case.content_hash("surface", name), entry)
    case.provenance = {k: Provenance.from_json(v) for k, v in manifest["provenance"].items()}
    for entry in manifest.get("landmarks", []):
        mark = Landmark(entry["name"], tuple(entry["position_lps_mm"]), entry.get("description", ""))
        case.landmarks[mark.name] = mark
    case.scenarios = _read_scenarios(folder, manifest.get("scenarios", []))
    return case


def _check_hash(file: Path, actual: str, entry: dict) -> None:
    expected = entry.get("hash")
    if expected and expected != actual:
        raise InputError(f"{file}: content does not match the hash recorded in case.json")
