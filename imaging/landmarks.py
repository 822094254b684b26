"""Named landmarks, a cephalometric template, measurements, and exchange formats.

Positions are LPS millimetres inside TwinPlan. 3D Slicer markups (.mrk.json)
are written in RAS and read in either RAS or LPS (per the file's
``coordinateSystem``); the conversion happens only in ``lps_to_ras``.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from imaging.errors import InputError

SLICER_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                 "Resources/Schema/markups-schema-v1.0.3.json#")

#: Cephalometric template, filled in this order (hard tissue, then soft tissue).
CEPHALOMETRIC_TEMPLATE: tuple[tuple[str, str], ...] = (
    ("S", "sella: centre of the sella turcica"),
    ("N", "nasion: most anterior point of the frontonasal suture"),
    ("Or", "orbitale: lowest point of the orbital rim"),
    ("Po", "porion: top of the external auditory meatus"),
    ("ANS", "anterior nasal spine"),
    ("PNS", "posterior nasal spine"),
    ("A", "A point: deepest point of the maxillary concavity"),
    ("U1", "upper incisor tip"),
    ("L1", "lower incisor tip"),
    ("B", "B point: deepest point of the mandibular concavity"),
    ("Pog", "pogonion: most anterior point of the chin"),
    ("Gn", "gnathion: between pogonion and menton"),
    ("Me", "menton: lowest point of the symphysis"),
    ("GoR", "gonion, right"),
    ("GoL", "gonion, left"),
    ("N'", "soft-tissue nasion"),
    ("Prn", "pronasale: nose tip"),
    ("Sn", "subnasale"),
    ("Ls", "labrale superius: upper lip"),
    ("Li", "labrale inferius: lower lip"),
    ("Pog'", "soft-tissue pogonion"),
    ("Me'", "soft-tissue menton"),
)


@dataclass
class Landmark:
    """A named point, LPS mm."""

    name: str
    position_lps: tuple[float, float, float]
    description: str = ""

    def __post_init__(self) -> None:
        p = np.asarray(self.position_lps, dtype=float)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise InputError(f"landmark {self.name!r}: position must be three finite numbers (mm)")
        self.position_lps = tuple(float(v) for v in p)

    @property
    def p(self) -> np.ndarray:
        return np.asarray(self.position_lps)


def lps_to_ras(points) -> np.ndarray:
    """The one place where LPS <-> RAS happens (the map is its own inverse)."""
    return np.asarray(points, dtype=float) * np.array([-1.0, -1.0, 1.0])


ras_to_lps = lps_to_ras


def next_template_landmark(placed: Iterable[str]) -> tuple[str, str] | None:
    """The next landmark of the cephalometric template that is not placed yet."""
    done = set(placed)
    for name, description in CEPHALOMETRIC_TEMPLATE:
        if name not in done:
            return name, description
    return None


# -- measurements -----------------------------------------------------------
def distance_mm(a: Landmark, b: Landmark) -> float:
    """Euclidean distance (mm)."""
    return float(np.linalg.norm(a.p - b.p))


def angle_deg(a: Landmark, vertex: Landmark, b: Landmark) -> float:
    """Angle a-vertex-b (deg)."""
    u, v = a.p - vertex.p, b.p - vertex.p
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        raise InputError(f"angle at {vertex.name}: a side has zero length")
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))))


def plane_from(a: Landmark, b: Landmark, c: Landmark) -> tuple[np.ndarray, np.ndarray]:
    """(point, unit normal) of the plane through three landmarks."""
    n = np.cross(b.p - a.p, c.p - a.p)
    norm = np.linalg.norm(n)
    if norm < 1e-9:
        raise InputError(f"plane {a.name}-{b.name}-{c.name}: the points are collinear")
    return a.p, n / norm


def distance_to_plane_mm(point: Landmark, plane: tuple[np.ndarray, np.ndarray]) -> float:
    """Signed distance (mm) from a landmark to a plane (positive on the normal's side)."""
    origin, normal = plane
    return float(np.dot(point.p - origin, normal))


def cephalometric_measurements(marks: dict[str, Landmark]) -> dict[str, float]:
    """Classic measurements whose landmarks are placed (SNA, SNB, ANB, lengths)."""
    out: dict[str, float] = {}

    def have(*names: str) -> bool:
        return all(n in marks for n in names)

    if have("S", "N", "A"):
        out["SNA_deg"] = angle_deg(marks["S"], marks["N"], marks["A"])
    if have("S", "N", "B"):
        out["SNB_deg"] = angle_deg(marks["S"], marks["N"], marks["B"])
    if "SNA_deg" in out and "SNB_deg" in out:
        out["ANB_deg"] = out["SNA_deg"] - out["SNB_deg"]
    if have("S", "N"):
        out["S-N_mm"] = distance_mm(marks["S"], marks["N"])
    if have("N", "Me"):
        out["N-Me_mm"] = distance_mm(marks["N"], marks["Me"])
    if have("ANS", "Me"):
        out["ANS-Me_mm"] = distance_mm(marks["ANS"], marks["Me"])
    return out


# -- exchange formats ---------------------------------------------------------
def write_slicer_markups(marks: Iterable[Landmark], path: str | os.PathLike) -> Path:
    """Write a 3D Slicer point list (.mrk.json), coordinates in RAS."""
    points = []
    for i, m in enumerate(marks, start=1):
        points.append({"id": str(i), "label": m.name, "description": m.description,
                       "position": lps_to_ras(m.position_lps).tolist(), "selected": True,
                       "locked": False, "visibility": True, "positionStatus": "defined"})
    doc = {"@schema": SLICER_SCHEMA,
           "markups": [{"type": "Fiducial", "coordinateSystem": "RAS", "coordinateUnits": "mm",
                        "locked": False, "labelFormat": "%N-%d", "controlPoints": points}]}
    out = Path(path)
    try:
        out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{out}: cannot write markups ({exc.strerror})") from exc
    return out


def read_slicer_markups(path: str | os.PathLike) -> list[Landmark]:
    """Read the control points of a 3D Slicer .mrk.json (RAS or LPS) as LPS landmarks."""
    src = Path(path)
    try:
        doc = json.loads(src.read_text(encoding="utf-8"))
        markups = doc["markups"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{src}: not a 3D Slicer markups file ({exc.__class__.__name__})") from exc
    marks: list[Landmark] = []
    for mk in markups:
        system = str(mk.get("coordinateSystem", "LPS")).upper()
        if system not in ("RAS", "LPS"):
            raise InputError(f"{src}: unsupported coordinateSystem {system!r}")
        if str(mk.get("coordinateUnits", "mm")) != "mm":
            raise InputError(f"{src}: coordinates must be in mm")
        for i, cp in enumerate(mk.get("controlPoints", [])):
            if cp.get("positionStatus", "defined") != "defined":
                continue
            pos = np.asarray(cp.get("position", []), dtype=float)
            if pos.shape != (3,):
                raise InputError(f"{src}: control point {i + 1} has no 3D position")
            lps = lps_to_ras(pos) if system == "RAS" else pos
            marks.append(Landmark(str(cp.get("label") or f"P{i + 1}"), tuple(lps), str(cp.get("description", ""))))
    return marks


def write_csv(marks: Iterable[Landmark], path: str | os.PathLike) -> Path:
    """CSV with name, LPS x/y/z (mm) and description."""
    out = Path(path)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "x_lps_mm", "y_lps_mm", "z_lps_mm", "description"])
        for m in marks:
            w.writerow([m.name, *[f"{v:.4f}" for v in m.position_lps], m.description])
    return out


def read_csv(path: str | os.PathLike) -> list[Landmark]:
    """Read landmarks written by :func:`write_csv`."""
    src = Path(path)
    try:
        with open(src, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return [Landmark(r["name"], (float(r["x_lps_mm"]), float(r["y_lps_mm"]), float(r["z_lps_mm"])),
                         r.get("description", "") or "") for r in rows]
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{src}: not a TwinPlan landmark CSV ({exc.__class__.__name__})") from exc
