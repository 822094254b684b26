"""Sampling of solution fields at points, without dolfinx (usable by the GUI and the CLI)."""
from __future__ import annotations

import numpy as np


def sample_point_field(grid, points, name: str) -> np.ndarray:
    """Point array ``name`` of the pyvista ``grid`` at ``points`` (mm).

    Interpolated inside the grid's cells; the nearest node's value outside
    (e.g. centerline points a hair outside a faceted wall).
    """
    import pyvista as pv
    from scipy.spatial import cKDTree

    pts = np.asarray(getattr(points, "points", points), dtype=float).reshape(-1, 3)
    sampled = pv.PolyData(pts).sample(grid)
    near = np.asarray(grid.point_data[name])[cKDTree(grid.points).query(pts)[1]]
    valid = np.asarray(sampled.point_data["vtkValidPointMask"]).astype(bool)
    return np.where(valid, np.asarray(sampled.point_data[name]), near)
