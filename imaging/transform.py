"""Spatial transforms between frames: a 4x4 matrix with from/to frame names.

A ``Transform`` maps points given in ``from_frame`` to ``to_frame``:
``p_to = M @ [p_from, 1]``. Frames are names such as ``"scan"`` (a surface
scan as saved by its scanner) or ``"patient"`` (the CT's LPS millimetres).
Translations are in millimetres.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from imaging.errors import InputError

#: Largest |R^T R - I| entry for a matrix to count as a rotation.
RIGID_TOL = 1e-6


@dataclass
class Transform:
    """A rigid or affine transform (4x4, homogeneous) from one frame to another.

    Attributes
    ----------
    matrix : numpy.ndarray
        4x4 float64; the last row is ``[0, 0, 0, 1]``. Translation in mm.
    from_frame, to_frame : str
        Names of the source and destination frames.
    """

    matrix: np.ndarray = field(default_factory=lambda: np.eye(4))
    from_frame: str = "scan"
    to_frame: str = "patient"

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, dtype=float)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise InputError(f"transform matrix must be a finite 4x4 array, got shape {m.shape}")
        if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
            raise InputError(f"transform matrix last row must be [0, 0, 0, 1], got {m[3].tolist()}")
        if abs(np.linalg.det(m[:3, :3])) < 1e-12:
            raise InputError("transform matrix is singular (not invertible)")
        self.matrix = m

    # -- construction ------------------------------------------------------
    @classmethod
    def from_rotation_translation(
        cls, rotation: np.ndarray, translation_mm, from_frame: str = "scan", to_frame: str = "patient"
    ) -> "Transform":
        """Build ``p -> R p + t`` from a 3x3 matrix and a translation (mm)."""
        m = np.eye(4)
        m[:3, :3] = np.asarray(rotation, dtype=float).reshape(3, 3)
        m[:3, 3] = np.asarray(translation_mm, dtype=float).reshape(3)
        return cls(m, from_frame, to_frame)

    # -- properties --------------------------------------------------------
    @property
    def linear(self) -> np.ndarray:
        """The 3x3 linear part."""
        return self.matrix[:3, :3]

    @property
    def translation_mm(self) -> np.ndarray:
        """The translation (mm), applied after the linear part."""
        return self.matrix[:3, 3]

    @property
    def is_rigid(self) -> bool:
        """True for a proper rotation plus translation (no scale, shear or mirror)."""
        r = self.linear
        return bool(np.abs(r.T @ r - np.eye(3)).max() < RIGID_TOL and np.linalg.det(r) > 0)

    @property
    def rotation_deg(self) -> float:
        """Rotation angle (degrees) of the linear part; for affine, of its nearest rotation."""
        return rotation_angle_deg(nearest_rotation(self.linear))

    # -- use ---------------------------------------------------------------
    def apply(self, points) -> np.ndarray:
        """Map points (n, 3) or (3,) given in ``from_frame`` to ``to_frame``."""
        p = np.asarray(points, dtype=float)
        out = np.atleast_2d(p) @ self.linear.T + self.translation_mm
        return out.reshape(p.shape)

    def apply_to_vectors(self, vectors) -> np.ndarray:
        """Map direction vectors (n, 3) (normals: only for rigid transforms)."""
        v = np.asarray(vectors, dtype=float)
        return (np.atleast_2d(v) @ self.linear.T).reshape(v.shape)

    def inverse(self) -> "Transform":
        """The transform from ``to_frame`` back to ``from_frame``."""
        return Transform(np.linalg.inv(self.matrix), self.to_frame, self.from_frame)

    def compose(self, first: "Transform") -> "Transform":
        """``self`` after ``first``: maps ``first.from_frame`` to ``self.to_frame``.

        Raises
        ------
        InputError
            If ``first.to_frame`` is not ``self.from_frame``.
        """
        if first.to_frame != self.from_frame:
            raise InputError(
                f"cannot compose: {first.from_frame}->{first.to_frame} then {self.from_frame}->{self.to_frame}"
            )
        return Transform(self.matrix @ first.matrix, first.from_frame, self.to_frame)

    def __matmul__(self, first: "Transform") -> "Transform":
        return self.compose(first)

    # -- persistence -------------------------------------------------------
    def to_json(self) -> dict:
        """JSON-ready dict: matrix (row-major nested lists), frames, rigid flag."""
        return {
            "matrix": self.matrix.tolist(),
            "from_frame": self.from_frame,
            "to_frame": self.to_frame,
            "rigid": self.is_rigid,
        }

    @classmethod
    def from_json(cls, data) -> "Transform":
        """Read a dict (or a JSON string) written by :meth:`to_json`.

        Raises
        ------
        InputError
            If the matrix is missing or not a valid 4x4 transform.
        """
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise InputError(f"transform JSON is not valid: {exc}") from exc
        if not isinstance(data, dict) or "matrix" not in data:
            raise InputError("transform JSON needs a 'matrix' (4x4 nested lists)")
        try:
            matrix = np.array(data["matrix"], dtype=float)
        except (TypeError, ValueError) as exc:
            raise InputError(f"transform matrix is not numeric: {exc}") from exc
        return cls(matrix, str(data.get("from_frame", "scan")), str(data.get("to_frame", "patient")))


def nearest_rotation(linear: np.ndarray) -> np.ndarray:
    """Closest proper rotation to a 3x3 matrix (polar decomposition via SVD)."""
    u, _s, vt = np.linalg.svd(np.asarray(linear, dtype=float))
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """Angle (degrees, 0..180) of a 3x3 rotation matrix."""
    cos = (np.trace(rotation) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def axis_angle_matrix(axis, angle_deg: float) -> np.ndarray:
    """3x3 rotation by ``angle_deg`` about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.radians(angle_deg)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


def rigid_about(rotation: np.ndarray, center_mm, translation_mm, from_frame: str = "scan",
                to_frame: str = "patient") -> Transform:
    """Rotate about ``center_mm`` then translate: ``p -> R (p - c) + c + t``."""
    r = np.asarray(rotation, dtype=float)
    c = np.asarray(center_mm, dtype=float)
    return Transform.from_rotation_translation(r, c - r @ c + np.asarray(translation_mm, dtype=float),
                                               from_frame, to_frame)


def random_rigid(rng: np.random.Generator, max_angle_deg: float, max_translation_mm: float,
                 center_mm=(0.0, 0.0, 0.0), from_frame: str = "scan", to_frame: str = "patient") -> Transform:
    """A random rigid transform: uniform axis, angle and translation length up to the maxima.

    The rotation is about ``center_mm`` (e.g. the centroid of the object moved) so
    that ``max_translation_mm`` bounds the motion of that point.
    """
    axis = rng.normal(size=3)
    angle = rng.uniform(0.0, max_angle_deg)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    shift = direction * rng.uniform(0.0, max_translation_mm)
    return rigid_about(axis_angle_matrix(axis, angle), center_mm, shift, from_frame, to_frame)


def rigid_from_landmarks(source_mm, target_mm, from_frame: str = "scan", to_frame: str = "patient") -> Transform:
    """Least-squares rigid transform taking source points onto target points (Kabsch).

    Parameters
    ----------
    source_mm, target_mm : array_like, shape (n, 3)
        Corresponding points, n >= 3 and not collinear, in mm.

    Returns
    -------
    Transform
        Rigid, mapping ``from_frame`` (source) to ``to_frame`` (target).

    Raises
    ------
    InputError
        Fewer than 3 pairs, mismatched counts or (nearly) collinear points.
    """
    src = np.asarray(source_mm, dtype=float).reshape(-1, 3)
    dst = np.asarray(target_mm, dtype=float).reshape(-1, 3)
    if len(src) != len(dst):
        raise InputError(f"landmarks: {len(src)} source points but {len(dst)} target points")
    if len(src) < 3:
        raise InputError(f"landmarks: need at least 3 pairs, got {len(src)}")
    cs, cd = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - cs, dst - cd
    sv = np.linalg.svd(a, compute_uv=False)
    if sv[1] < 1e-3 * max(sv[0], 1e-12):
        raise InputError("landmarks: the source points are (nearly) collinear; pick 3+ spread-out points")
    u, _s, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return Transform.from_rotation_translation(r, cd - r @ cs, from_frame, to_frame)


def transform_error(estimate: Transform, truth: Transform, points_mm: Optional[np.ndarray] = None) -> dict:
    """How far an estimated transform is from the true one.

    Parameters
    ----------
    estimate, truth : Transform
        Both map the same frames.
    points_mm : array_like, optional
        Targets (n, 3) in the source frame at which to measure the
        displacement error (target registration error).

    Returns
    -------
    dict
        ``rotation_deg`` (angle of the residual rotation), ``translation_mm``
        (displacement error at the targets' centroid, or at the frame origin
        without targets) and, with targets, ``tre_rms_mm``, ``tre_mean_mm``
        and ``tre_max_mm``.
    """
    residual = estimate.matrix @ np.linalg.inv(truth.matrix)
    centre = np.zeros(3) if points_mm is None else truth.apply(np.asarray(points_mm, float).reshape(-1, 3).mean(axis=0))
    out = {
        "rotation_deg": rotation_angle_deg(nearest_rotation(residual[:3, :3])),
        "translation_mm": float(np.linalg.norm(residual[:3, :3] @ centre + residual[:3, 3] - centre)),
    }
    if points_mm is not None:
        err = np.linalg.norm(estimate.apply(points_mm) - truth.apply(points_mm), axis=-1)
        out.update(tre_rms_mm=float(np.sqrt(np.mean(err**2))), tre_mean_mm=float(err.mean()),
                   tre_max_mm=float(err.max()))
    return out
