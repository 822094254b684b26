"""Centerline branch graph of a vessel lumen: points, radius, topology and ports.

A :class:`VesselTree` is what ``imaging.centerline`` extracts from a lumen
surface and what ``mechanics.reduced`` (the 1D FFR model) solves on. Every
coordinate is in the lumen's own frame (mm). Branch 0 starts at the inlet;
a child's first point is its parent's last point (the bifurcation).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyvista as pv

from imaging.errors import InputError
from imaging.ports import INLET, Port


@dataclass
class Branch:
    """One vessel segment between bifurcations (or an end).

    Attributes
    ----------
    points : ndarray (N, 3)
        Centerline points from proximal to distal, mm.
    radius_mm : ndarray (N,)
        Lumen radius at each point (maximal inscribed sphere), mm.
    parent : int or None
        Index of the parent branch, None for the root (inlet) branch.
    children : list of int
        Indices of the daughter branches starting at this branch's last point.
    port : str or None
        Name of the outlet port at the distal end (terminal branches only).
    """

    points: np.ndarray
    radius_mm: np.ndarray
    parent: Optional[int] = None
    children: list[int] = field(default_factory=list)
    port: Optional[str] = None

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=float).reshape(-1, 3)
        self.radius_mm = np.asarray(self.radius_mm, dtype=float).reshape(-1)
        if len(self.points) < 2 or len(self.radius_mm) != len(self.points):
            raise InputError(f"branch needs >= 2 points and one radius per point, got {len(self.points)} points, "
                             f"{len(self.radius_mm)} radii")
        if np.any(~np.isfinite(self.radius_mm)) or np.any(self.radius_mm <= 0):
            raise InputError("branch radius_mm must be positive and finite")

    @property
    def arclength_mm(self) -> np.ndarray:
        """Cumulative distance along the branch from its first point (mm)."""
        return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(self.points, axis=0), axis=1))])

    @property
    def length_mm(self) -> float:
        return float(self.arclength_mm[-1])


@dataclass
class VesselTree:
    """Branches rooted at the inlet plus the lumen's ports.

    Attributes
    ----------
    branches : list of Branch
        Branch 0 is the root, starting at the inlet.
    ports : list of Port
        Inlet and outlets of the lumen (``imaging.ports``).
    """

    branches: list[Branch]
    ports: list[Port] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.branches:
            raise InputError("vessel tree has no branches")

    # -- topology -------------------------------------------------------------
    @property
    def inlet(self) -> Optional[Port]:
        return next((p for p in self.ports if p.kind == INLET), None)

    @property
    def outlets(self) -> list[Port]:
        return [p for p in self.ports if p.kind != INLET]

    def port(self, name: str) -> Port:
        for p in self.ports:
            if p.name == name:
                return p
        raise InputError(f"no port named {name!r} (have {[p.name for p in self.ports]})")

    def terminal_branches(self) -> list[int]:
        return [i for i, b in enumerate(self.branches) if not b.children]

    def path_to_root(self, index: int) -> list[int]:
        """Branch indices from the root down to ``index``."""
        path = [index]
        while self.branches[path[-1]].parent is not None:
            path.append(self.branches[path[-1]].parent)
        return path[::-1]

    @property
    def length_mm(self) -> float:
        """Total centerline length of all branches (mm)."""
        return float(sum(b.length_mm for b in self.branches))

    def copy(self) -> "VesselTree":
        """Independent branches (points, radius, children copied); ports are shared (treated as immutable)."""
        branches = []
        for b in self.branches:
            nb = copy.copy(b)
            nb.points, nb.radius_mm, nb.children = b.points.copy(), b.radius_mm.copy(), list(b.children)
            branches.append(nb)
        return VesselTree(branches, list(self.ports))

    def validate(self) -> None:
        """Check parent/child links, shared bifurcation points and outlet ports; raise InputError."""
        roots = [i for i, b in enumerate(self.branches) if b.parent is None]
        if roots != [0]:
            raise InputError(f"vessel tree must have exactly one root, branch 0 (roots: {roots})")
        names = {p.name for p in self.outlets}
        for i, b in enumerate(self.branches):
            for c in b.children:
                if self.branches[c].parent != i:
                    raise InputError(f"branch {c} is a child of {i} but names parent {self.branches[c].parent}")
            if not b.children and b.port is not None and b.port not in names:
                raise InputError(f"terminal branch {i} ends at unknown port {b.port!r}")

    # -- output ---------------------------------------------------------------
    def to_polydata(self) -> pv.PolyData:
        """Polylines, one per branch, with point array ``Radius`` (mm) and cell arrays ``BranchId``, ``ParentId``."""
        pts, lines, radius, bid = [], [], [], []
        offset = 0
        for i, b in enumerate(self.branches):
            n = len(b.points)
            pts.append(b.points)
            radius.append(b.radius_mm)
            lines.append(np.concatenate([[n], np.arange(offset, offset + n)]))
            bid.append(np.full(n, i))
            offset += n
        poly = pv.PolyData(np.vstack(pts), lines=np.concatenate(lines))
        poly.point_data["Radius"] = np.concatenate(radius)
        poly.point_data["BranchId"] = np.concatenate(bid).astype(np.int32)
        poly.cell_data["BranchId"] = np.arange(len(self.branches), dtype=np.int32)
        poly.cell_data["ParentId"] = np.array([-1 if b.parent is None else b.parent for b in self.branches],
                                              dtype=np.int32)
        return poly

    @classmethod
    def from_polydata(cls, poly: pv.PolyData, ports: Optional[list[Port]] = None) -> "VesselTree":
        """Rebuild a tree from polylines with a ``Radius`` point array (parents from shared end points)."""
        if "Radius" not in poly.point_data:
            raise InputError("centerline polydata has no point array 'Radius'")
        radius = np.asarray(poly.point_data["Radius"], dtype=float)
        branches = []
        for i in range(poly.n_cells):
            ids = poly.get_cell(i).point_ids
            branches.append(Branch(poly.points[ids], radius[ids]))
        for i, b in enumerate(branches):
            for j, a in enumerate(branches):
                if i != j and b.parent is None and np.linalg.norm(b.points[0] - a.points[-1]) < 1e-6:
                    b.parent = j
                    a.children.append(i)
        tree = cls(branches, list(ports or []))
        if ports:
            for b in tree.branches:
                if not b.children and tree.outlets:
                    b.port = min(tree.outlets, key=lambda p: np.linalg.norm(p.center - b.points[-1])).name
        return tree
