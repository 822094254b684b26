"""DICOM series model and stack ordering: slice headers, series info, and one series' headers sorted into stacks.

:class:`SeriesInfo` is what a folder scan (:mod:`imaging.dicom`) finds for one
image series: its slices as :class:`SliceHeader` ordered by ImagePositionPatient
projected on the slice normal, the grid geometry derived from those headers, the
kind of scan (CT, MR, dental cone-beam CT...) and warnings about uneven spacing,
missing slices or gantry tilt. :func:`build_series` turns the header dicts of one
SeriesInstanceUID into such series, splitting repeated positions into separate
stacks (echoes, acquisitions, time points) and recording the files it drops as
:class:`SkippedFile`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from imaging.volume import Geometry

#: Makers of dental/maxillofacial cone-beam CT (matched in Manufacturer + model, lower case).
CBCT_VENDORS = ("planmeca", "carestream", "sirona", "dentsply", "kavo", "vatech", "newtom", "cefla",
                "imaging sciences", "i-cat", "morita", "acteon", "soredex", "instrumentarium", "gendex",
                "myray", "prexion", "asahi", "cs 8100", "cs 9300", "orthophos", "promax")
#: Relative spread of slice steps above which spacing is called non-uniform.
SPACING_TOLERANCE = 0.01
#: Angle (deg) between the slice normal and the stacking direction called a tilt.
TILT_TOLERANCE_DEG = 0.5


@dataclass
class SkippedFile:
    """A file that is not a usable image slice, and why."""

    path: str
    reason: str


@dataclass
class SliceHeader:
    path: str
    position: np.ndarray  # ImagePositionPatient, LPS mm
    instance: int
    #: Set when pixels can be read directly: (byte offset, numpy dtype, slope, intercept).
    native: Optional[tuple[int, str, float, float]] = None
    frame: int = -1  # frame index in a multi-frame file, -1 for single-frame files
    rescale: tuple[float, float] = (1.0, 0.0)  # (slope, intercept) of a frame


@dataclass
class SeriesInfo:
    """One image series found in a folder, ordered along the slice normal."""

    series_uid: str
    modality: str
    description: str
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]  # (column spacing x, row spacing y) mm
    orientation: np.ndarray  # 2x3: row direction, column direction (LPS)
    slices: list[SliceHeader] = field(default_factory=list)
    gantry_tilt_deg: float = 0.0
    vendor: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """"cbct" for dental cone-beam CT, else the modality in lower case."""
        vendor = self.vendor.lower()
        if any(v in vendor for v in CBCT_VENDORS) or "cbct" in self.description.lower():
            return "cbct"
        spacing = [self.pixel_spacing[0], self.pixel_spacing[1], self.slice_spacing_mm()]
        isotropic = max(spacing) - min(spacing) <= 0.02 * max(spacing)
        if self.modality in ("CT", "OT") and isotropic and max(spacing) <= 0.4 and len(self.slices) >= 50:
            return "cbct"
        return self.modality.lower() or "unknown"

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.orientation[0], self.orientation[1])

    @property
    def files(self) -> list[str]:
        return [s.path for s in self.slices]

    def steps_mm(self) -> np.ndarray:
        """Distances between consecutive slice positions (mm)."""
        if len(self.slices) < 2:
            return np.zeros(0)
        pos = np.array([s.position for s in self.slices])
        return np.linalg.norm(np.diff(pos, axis=0), axis=1)

    def slice_spacing_mm(self) -> float:
        steps = self.steps_mm()
        return float(np.median(steps)) if steps.size else 1.0

    def geometry(self) -> Geometry:
        """Grid geometry from the headers (first slice = origin)."""
        row, col = self.orientation
        if len(self.slices) >= 2:
            stack = self.slices[-1].position - self.slices[0].position
            stack = stack / np.linalg.norm(stack)
        else:
            stack = self.normal
        direction = np.column_stack([row, col, stack])
        spacing = (self.pixel_spacing[0], self.pixel_spacing[1], self.slice_spacing_mm())
        return Geometry(spacing, tuple(self.slices[0].position), direction)

    def is_irregular(self) -> bool:
        """True when slices are tilted or unevenly spaced (needs resampling)."""
        return any(w.startswith(("non-uniform", "gantry tilt")) for w in self.warnings)

    def summary(self) -> dict:
        """JSON-ready summary (the `twinplan info` contract)."""
        g = self.geometry()
        return {
            "series_uid": self.series_uid,
            "modality": self.modality,
            "description": self.description,
            "n_slices": len(self.slices),
            "dims_xyz": [self.columns, self.rows, len(self.slices)],
            "spacing_xyz": [round(v, 6) for v in g.spacing_xyz],
            "origin": [round(v, 6) for v in g.origin_xyz],
            "warnings": list(self.warnings),
            "kind": self.kind,
        }


def build_series(uid: str, headers: list[dict], skipped: list[SkippedFile]) -> list[SeriesInfo]:
    """Order one UID's slices into stacks.

    Slices of another size/orientation than the main stack are skipped. Where
    positions repeat, the series holds several acquisitions, echoes or time
    points: each becomes its own stack (ID ``UID#echo=2`` etc.).
    """
    by_shape: dict[tuple, list[dict]] = {}
    for h in headers:
        key = (h["rows"], h["columns"], tuple(np.round(h["orientation"].ravel(), 4)))
        by_shape.setdefault(key, []).append(h)
    main_key = max(by_shape, key=lambda k: len(by_shape[k]))
    for key, hs in by_shape.items():
        if key != main_key:
            for h in hs:
                skipped.append(SkippedFile(h["path"], "slice size/orientation differs from its series"))
    hs = by_shape[main_key]
    normal = np.cross(hs[0]["orientation"][0], hs[0]["orientation"][1])
    depth = [round(float(np.dot(h["position"], normal)), 3) for h in hs]
    stacks: dict[tuple, list[dict]] = {(): hs}
    if len(set(depth)) < len(depth):
        split: dict[tuple, list[dict]] = {}
        for h in hs:
            split.setdefault(h["stack_key"], []).append(h)
        if len(split) > 1:
            stacks = split
    series = []
    for key, group in sorted(stacks.items()):
        sub_uid = uid
        if key:
            names = ("echo", "acq", "time")
            differing = [i for i in range(3) if len({k[i] for k in stacks}) > 1]
            sub_uid = uid + "#" + ",".join(f"{names[i]}={key[i]}" for i in differing)
        series.append(_make_stack(sub_uid, group, normal, skipped))
        if key:
            series[-1].warnings.append(f"series split into {len(stacks)} stacks (acquisitions/echoes/time points)")
    return series


def _make_stack(uid: str, hs: list[dict], normal: np.ndarray, skipped: list[SkippedFile]) -> SeriesInfo:
    first = hs[0]
    info = SeriesInfo(
        series_uid=uid,
        modality=first["modality"],
        description=first["description"],
        rows=first["rows"],
        columns=first["columns"],
        pixel_spacing=first["pixel_spacing"],
        orientation=first["orientation"],
        gantry_tilt_deg=first["tilt"],
        vendor=first["vendor"],
    )
    hs = sorted(hs, key=lambda h: float(np.dot(h["position"], normal)))
    seen: set[float] = set()
    for h in hs:
        d = round(float(np.dot(h["position"], normal)), 3)
        if d in seen:
            skipped.append(SkippedFile(h["path"], "duplicate slice position in its series"))
            continue
        seen.add(d)
        info.slices.append(SliceHeader(h["path"], h["position"], h["instance"], h["native"],
                                       h.get("frame", -1), h.get("rescale", (1.0, 0.0))))
    info.warnings = _geometry_warnings(info)
    if first["uid_derived"]:
        info.warnings.insert(0, "SeriesInstanceUID missing: series ID derived from other series attributes")
    if info.kind == "cbct":
        info.warnings.append(
            "dental cone-beam CT: grey values are not calibrated Hounsfield units; "
            "use the CBCT presets or check thresholds on the image"
        )
    return info


def _geometry_warnings(info: SeriesInfo) -> list[str]:
    warnings = []
    steps = info.steps_mm()
    if steps.size:
        med = float(np.median(steps))
        if med > 0 and (steps.max() - steps.min()) > SPACING_TOLERANCE * med:
            warnings.append(
                f"non-uniform slice spacing: steps {steps.min():.3f}..{steps.max():.3f} mm "
                f"(median {med:.3f} mm)"
            )
            gaps = int(np.sum(np.rint(steps / steps.min()) >= 2))
            if gaps and np.allclose(steps / steps.min(), np.rint(steps / steps.min()), atol=0.05):
                warnings.append(f"missing slices: {gaps} gap(s) in the stack")
        pos = np.array([s.position for s in info.slices])
        stack = pos[-1] - pos[0]
        if np.linalg.norm(stack) > 0:
            cosang = abs(np.dot(stack / np.linalg.norm(stack), info.normal))
            angle = float(np.degrees(np.arccos(min(1.0, cosang))))
            if angle > TILT_TOLERANCE_DEG or abs(info.gantry_tilt_deg) > TILT_TOLERANCE_DEG:
                tilt = info.gantry_tilt_deg if info.gantry_tilt_deg else angle
                warnings.append(
                    f"gantry tilt {tilt:.1f} deg: slices are sheared "
                    f"({angle:.1f} deg between the stack and the slice normal)"
                )
    if len(info.slices) < 2:
        warnings.append("single slice: no 3D geometry")
    return warnings
