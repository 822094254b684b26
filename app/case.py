"""The case: one patient's digital twin (scans, derived items, provenance).

Plain Python, no Qt. Observers subscribe to ``Case.changed`` (psygnal).
"""
from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import platform
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import pyvista as pv
from psygnal import Signal

from imaging.landmarks import Landmark
from imaging.volume import LabelMap, Volume

if TYPE_CHECKING:
    from app.scenarios import Scenario

KINDS = ("volume", "label", "surface")


def software_versions() -> dict[str, str]:
    """Versions of TwinPlan and the libraries that shape its results."""
    import SimpleITK
    import pydicom
    import vtk

    from app import __version__

    return {
        "twinplan": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "vtk": vtk.vtkVersion.GetVTKVersion(),
        "simpleitk": SimpleITK.Version_VersionString(),
        "pydicom": pydicom.__version__,
        "pyvista": pv.__version__,
    }


def hash_surface(surface: pv.PolyData) -> str:
    """Content hash of a surface's points and faces."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(surface.points, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(surface.faces).tobytes())
    return h.hexdigest()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


@dataclass
class Provenance:
    """Where a derived item came from: enough to replay it."""

    operation: str
    params: dict[str, Any]
    inputs: list[dict[str, str]] = field(default_factory=list)  # [{"id", "hash"}]
    output_hash: str = ""
    versions: dict[str, str] = field(default_factory=software_versions)
    time: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat())
    user: str = field(default_factory=_os_user)
    #: Provenance of the version this one replaced, when the step edited the item in place
    #: (an input is the item itself): the chain replay walks back to the raw input.
    previous: Optional[dict] = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Provenance":
        return cls(**d)


def item_id(kind: str, name: str) -> str:
    """Stable id of an item in a case, e.g. ``label/bone``."""
    if kind not in KINDS:
        raise ValueError(f"unknown item kind {kind!r}")
    return f"{kind}/{name}"


class Case:
    """Volumes, label maps and surfaces of one patient, with provenance.

    ``changed(kind, name)`` is emitted after an item is set or removed.
    """

    changed = Signal(str, str)

    def __init__(self, name: str = "case") -> None:
        self.name = name
        self.volumes: dict[str, Volume] = {}
        self.labels: dict[str, LabelMap] = {}
        self.surfaces: dict[str, pv.PolyData] = {}
        self.provenance: dict[str, Provenance] = {}
        self.landmarks: dict[str, Landmark] = {}
        self.scenarios: dict[str, "Scenario"] = {}  # app.scenarios, in creation order

    # -- landmarks (placed by people, so no provenance) ----------------------
    def set_landmark(self, landmark: Landmark) -> None:
        self.landmarks[landmark.name] = landmark
        self.changed.emit("landmark", landmark.name)

    def remove_landmark(self, name: str) -> None:
        self.landmarks.pop(name, None)
        self.changed.emit("landmark", name)

    # -- items -------------------------------------------------------------
    def _store(self, kind: str) -> dict:
        return {"volume": self.volumes, "label": self.labels, "surface": self.surfaces}[kind]

    def content_hash(self, kind: str, name: str) -> str:
        item = self._store(kind)[name]
        if kind == "surface":
            return hash_surface(item)
        return item.content_hash()

    def set_item(
        self, kind: str, name: str, item, provenance: Optional[Provenance] = None
    ) -> str:
        """Add or replace an item; records provenance with the output hash."""
        self._store(kind)[name] = item
        iid = item_id(kind, name)
        if provenance is not None:
            provenance.output_hash = self.content_hash(kind, name)
            old = self.provenance.get(iid)
            if old is not None and any(r.get("id") == iid for r in provenance.inputs):
                provenance.previous = old.to_json()
            self.provenance[iid] = provenance
        self.changed.emit(kind, name)
        return iid

    def remove_item(self, kind: str, name: str) -> None:
        self._store(kind).pop(name, None)
        self.provenance.pop(item_id(kind, name), None)
        self.changed.emit(kind, name)

    def input_ref(self, kind: str, name: str) -> dict[str, str]:
        """Provenance input entry (id + content hash) for an existing item."""
        return {"id": item_id(kind, name), "hash": self.content_hash(kind, name)}

    # -- convenience -------------------------------------------------------
    def primary_volume(self) -> tuple[str, Volume]:
        """The first volume (the scan the case was built from)."""
        if not self.volumes:
            raise KeyError("the case has no volume")
        name = next(iter(self.volumes))
        return name, self.volumes[name]

    def summary(self) -> dict:
        return {
            "name": self.name,
            "volumes": {k: list(v.dims_xyz) for k, v in self.volumes.items()},
            "labels": {k: v.voxel_count(1) for k, v in self.labels.items()},
            "surfaces": {k: int(s.n_cells) for k, s in self.surfaces.items()},
            "landmarks": sorted(self.landmarks),
            "scenarios": list(self.scenarios),
        }
