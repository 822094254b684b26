"""Domain exceptions shared by imaging, mechanics and the app.

Every error names the offending file or parameter so the user can act on it.
"""
from __future__ import annotations


class TwinPlanError(Exception):
    """Base of all TwinPlan domain errors."""


class InputError(TwinPlanError):
    """Bad or unreadable input: a file, a folder or a parameter."""


class SegmentationError(TwinPlanError):
    """A segmentation step produced nothing usable (e.g. an empty label)."""


class MeshError(TwinPlanError):
    """Meshing failed or the mesh is unusable."""


class SolverError(TwinPlanError):
    """A finite-element or reduced solver failed (diverged, not converged)."""
