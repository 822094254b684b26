"""Inlets and outlets of a vessel lumen: the contract between geometry and flow.

``imaging.vessels`` finds ports on a lumen surface (open boundary loops or
given cap surfaces); ``imaging.lumen_mesh`` tags the tet mesh facets with
them; ``mechanics.flow`` and ``mechanics.reduced`` put boundary conditions on
them. Coordinates are the lumen's own (millimetres).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INLET = "inlet"
OUTLET = "outlet"


@dataclass
class Port:
    """One flow opening of the lumen.

    Attributes
    ----------
    name : str
        Stable id, ``"inlet"`` or ``"outlet_1"``, ``"outlet_2"``...
    kind : str
        ``"inlet"`` or ``"outlet"``.
    center : ndarray (3,)
        Centroid of the opening, mm.
    normal : ndarray (3,)
        Unit normal pointing OUT of the lumen.
    radius_mm : float
        Equivalent radius sqrt(area / pi).
    tag : int
        Facet tag in the tet mesh (wall is 1, inlet 2, outlets 3, 4, ...).
    """

    name: str
    kind: str
    center: np.ndarray
    normal: np.ndarray
    radius_mm: float
    tag: int
    loop: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)), repr=False)  # rim points, mm

    def __post_init__(self) -> None:
        if self.kind not in (INLET, OUTLET):
            raise ValueError(f"port kind must be inlet or outlet, got {self.kind!r}")
        self.center = np.asarray(self.center, dtype=float).reshape(3)
        n = np.asarray(self.normal, dtype=float).reshape(3)
        self.normal = n / np.linalg.norm(n)
        self.loop = np.asarray(self.loop, dtype=float).reshape(-1, 3)

    @property
    def area_mm2(self) -> float:
        return float(np.pi * self.radius_mm ** 2)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "center": self.center.tolist(),
                "normal": self.normal.tolist(), "radius_mm": self.radius_mm, "tag": self.tag}

    @classmethod
    def from_json(cls, d: dict) -> "Port":
        return cls(d["name"], d["kind"], d["center"], d["normal"], float(d["radius_mm"]), int(d["tag"]))


WALL_TAG = 1
INLET_TAG = 2
FIRST_OUTLET_TAG = 3
