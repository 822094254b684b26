"""Lesions on a vessel tree: detection against a reference radius, introduced lesions, virtual stents.

Stenosis grading follows quantitative coronary angiography: the percent
diameter stenosis is ``1 - d_min / d_ref`` with ``d_ref`` the healthy
(reference) diameter interpolated across the lesion; area stenosis is
``1 - (d_min / d_ref)**2``.

Introduced lesions are a *scenario*, not a finding: when a real geometry has
no significant narrowing we narrow it on purpose (cosine profile, chosen
severity and length) to exercise FFR, and every result derived from it says
so (``Lesion.introduced``).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Optional, Union

import numpy as np
import pyvista as pv

from imaging.errors import InputError
from imaging.vessel_tree import VesselTree

log = logging.getLogger(__name__)


@dataclass
class Lesion:
    """One narrowing on one branch (positions are arc lengths along the branch, mm)."""

    branch: int
    start_mm: float
    end_mm: float
    throat_mm: float
    min_radius_mm: float
    reference_radius_mm: float
    introduced: bool = False

    @property
    def length_mm(self) -> float:
        return self.end_mm - self.start_mm

    @property
    def diameter_stenosis(self) -> float:
        """Fractional diameter stenosis 1 - d_min / d_ref."""
        return 1.0 - self.min_radius_mm / self.reference_radius_mm

    @property
    def area_stenosis(self) -> float:
        """Fractional area stenosis 1 - (d_min / d_ref)**2."""
        return 1.0 - (self.min_radius_mm / self.reference_radius_mm) ** 2

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(length_mm=self.length_mm, diameter_stenosis_pct=100.0 * self.diameter_stenosis,
                 area_stenosis_pct=100.0 * self.area_stenosis)
        return d


def compute_reference_radius(s_mm: np.ndarray, radius_mm: np.ndarray, *, exclude_below: float = 0.9,
                             iterations: int = 8, use: Optional[np.ndarray] = None) -> np.ndarray:
    """Healthy (reference) radius along a branch, interpolated under narrowings.

    A straight line in arc length (vessel taper) is fitted to the radius, the
    points more than ``1 - exclude_below`` below the fit are dropped as
    diseased and the fit repeated until stable.

    Parameters
    ----------
    s_mm, radius_mm : ndarray (N,)
        Arc length and radius along the branch, mm.
    exclude_below : float
        Points with ``r < exclude_below * r_ref`` do not inform the reference.
    iterations : int
        Maximum refits.
    use : ndarray of bool, optional
        Points allowed to inform the fit (e.g. not the flare at a bifurcation).

    Returns
    -------
    ndarray (N,)
        Reference radius, mm (never below the measured radius's median * 0.5).
    """
    s = np.asarray(s_mm, float)
    r = np.asarray(radius_mm, float)
    allowed = np.ones(len(r), bool) if use is None or np.sum(use) < 3 else np.asarray(use, bool)
    keep = allowed.copy()
    med = float(np.median(r))
    ref = np.full(len(r), med)
    for _ in range(iterations):
        if keep.sum() >= 3 and np.ptp(s[keep]) > 0:
            sk, rk = s[keep], r[keep]  # least-squares line, closed form
            sm, rm = sk.mean(), rk.mean()
            a = np.dot(sk - sm, rk - rm) / np.dot(sk - sm, sk - sm)
            ref = rm + a * (s - sm)
        else:
            ref = np.full(len(r), np.median(r[keep]) if keep.any() else med)
        new_keep = allowed & (r >= exclude_below * ref)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return np.maximum(ref, 0.5 * med)


def detect_lesions(tree: VesselTree, *, min_stenosis: float = 0.3, shoulder: float = 0.95,
                   skip_ends_radii: float = 1.0) -> list[Lesion]:
    """Find narrowings whose diameter stenosis reaches ``min_stenosis``.

    Parameters
    ----------
    tree : VesselTree
        Centerlines with radius.
    min_stenosis : float
        Minimum fractional diameter stenosis to report (0.3 = 30 %; 0.5 is the
        usual angiographic "significant").
    shoulder : float
        A lesion extends while ``r < shoulder * r_ref``.
    skip_ends_radii : float
        Ignore throats within this many radii of a branch end, where the
        inscribed sphere is cut by the bifurcation or the port.

    Returns
    -------
    list of Lesion
        Sorted by severity (worst first).
    """
    if not 0.0 < min_stenosis < 1.0:
        raise InputError(f"min_stenosis must be in (0, 1), got {min_stenosis}")
    found = []
    for bi, b in enumerate(tree.branches):
        s, r = b.arclength_mm, b.radius_mm
        ref = compute_reference_radius(s, r, use=_away_from_junctions(b))
        low = r < shoulder * ref
        i = 0
        while i < len(r):
            if not low[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(r) and low[j + 1]:
                j += 1
            k = i + int(np.argmin(r[i:j + 1] / ref[i:j + 1]))
            margin = skip_ends_radii * ref[k]
            if 1.0 - r[k] / ref[k] >= min_stenosis and margin <= s[k] <= s[-1] - margin:
                found.append(Lesion(bi, float(s[i]), float(s[j]), float(s[k]), float(r[k]), float(ref[k])))
            i = j + 1
    found.sort(key=lambda les: -les.diameter_stenosis)
    return found


def _away_from_junctions(b, radii: float = 1.5) -> np.ndarray:
    """Points farther than ``radii`` local radii from a bifurcation: the flare there is not the vessel's size."""
    s = b.arclength_mm
    use = np.ones(len(s), bool)
    if b.parent is not None:
        use &= s > radii * b.radius_mm[0]
    if b.children:
        use &= s < s[-1] - radii * b.radius_mm[-1]
    return use


def _cosine_factor(s: np.ndarray, center: float, severity: float, length: float) -> np.ndarray:
    x = (s - center) / length
    bump = np.where(np.abs(x) < 0.5, 0.5 * (1.0 + np.cos(2.0 * np.pi * x)), 0.0)
    return 1.0 - severity * bump


def _check_lesion_args(tree: VesselTree, branch: int, position_mm: float, severity: float, length_mm: float) -> None:
    if not 0 <= branch < len(tree.branches):
        raise InputError(f"branch {branch} out of range (tree has {len(tree.branches)} branches)")
    if not 0.0 <= severity < 1.0:
        raise InputError(f"lesion severity (fractional diameter stenosis) must be in [0, 1), got {severity}")
    if length_mm <= 0:
        raise InputError(f"lesion length must be positive, got {length_mm} mm")
    L = tree.branches[branch].length_mm
    if not 0.0 <= position_mm <= L:
        raise InputError(f"lesion position {position_mm} mm outside branch {branch} (0..{L:.1f} mm)")


def introduce_lesion(target: Union[VesselTree, pv.PolyData], branch: int, position_mm: float, severity: float,
                     length_mm: float, *, tree: Optional[VesselTree] = None) -> Union[VesselTree, pv.PolyData]:
    """Scenario: narrow a branch with a cosine-shaped lesion (not a finding in the scan).

    ``r(s) = r0(s) * (1 - severity * (1 + cos(2 pi (s - position) / length)) / 2)``
    for ``|s - position| < length / 2``: the diameter stenosis at the throat
    is ``severity`` relative to the unmodified radius.

    Parameters
    ----------
    target : VesselTree or pyvista.PolyData
        A tree (radius changed) or a lumen surface (points moved towards the
        centerline of ``tree``; pass ``tree=``).
    branch : int
        Branch index.
    position_mm : float
        Throat position, arc length from the branch start, mm.
    severity : float
        Fractional diameter stenosis at the throat, 0..1 (0.7 = 70 %).
    length_mm : float
        Lesion length, mm.
    tree : VesselTree, optional
        Centerlines of the surface (required when ``target`` is a surface).

    Returns
    -------
    VesselTree or pyvista.PolyData
        A modified copy of ``target``.
    """
    if isinstance(target, VesselTree):
        _check_lesion_args(target, branch, position_mm, severity, length_mm)
        out = target.copy()
        b = out.branches[branch]
        b.radius_mm = b.radius_mm * _cosine_factor(b.arclength_mm, position_mm, severity, length_mm)
        log.info("introduced %.0f %% lesion, %.1f mm long, on branch %d", 100 * severity, length_mm, branch)
        return out
    if tree is None:
        raise InputError("introduce_lesion on a surface needs the centerline tree (tree=...)")
    _check_lesion_args(tree, branch, position_mm, severity, length_mm)
    return _narrow_surface(target, tree, branch, position_mm, severity, length_mm)


def _dense_centerline(tree: VesselTree, step_mm: float = 0.1):
    """Centerline resampled finely: points, branch id, arc length."""
    pts, bid, arc = [], [], []
    for i, b in enumerate(tree.branches):
        s = b.arclength_mm
        t = np.linspace(0.0, s[-1], max(2, int(np.ceil(s[-1] / step_mm)) + 1))
        pts.append(np.column_stack([np.interp(t, s, b.points[:, k]) for k in range(3)]))
        bid.append(np.full(len(t), i))
        arc.append(t)
    return np.vstack(pts), np.concatenate(bid), np.concatenate(arc)


def _narrow_surface(surface: pv.PolyData, tree: VesselTree, branch: int, position_mm: float, severity: float,
                    length_mm: float) -> pv.PolyData:
    narrowed = introduce_lesion(tree, branch, position_mm, severity, length_mm)
    return deform_surface(surface, tree, narrowed)


def deform_surface(surface: pv.PolyData, tree: VesselTree, new_tree: VesselTree) -> pv.PolyData:
    """Move a lumen surface radially so its radius follows ``new_tree`` instead of ``tree``.

    Each surface point moves along the line from its nearest centerline point,
    scaled by ``r_new / r_old`` there (same topology, same branches): a lesion
    scenario or a stent made on the tree, carried to the surface for the 3D model.

    Parameters
    ----------
    surface : pyvista.PolyData
        Lumen surface, mm.
    tree, new_tree : VesselTree
        Original and modified centerlines (same points, different radius).

    Returns
    -------
    pyvista.PolyData
        Deformed copy of ``surface``.
    """
    from scipy.spatial import cKDTree

    if len(tree.branches) != len(new_tree.branches):
        raise InputError("deform_surface: the two trees must have the same branches")
    step = 0.05 * min(float(b.radius_mm.min()) for b in tree.branches) + 0.02
    pts, bid, arc = _dense_centerline(tree, step)
    ratio = np.concatenate([
        np.interp(arc[bid == i], b.arclength_mm, nb.radius_mm / b.radius_mm)
        for i, (b, nb) in enumerate(zip(tree.branches, new_tree.branches))])
    _, idx = cKDTree(pts).query(np.asarray(surface.points))
    out = surface.copy()
    c = pts[idx]
    out.points = c + (np.asarray(surface.points) - c) * ratio[idx][:, None]
    return out


def apply_stent(tree: VesselTree, lesion: Lesion, length_mm: Optional[float] = None,
                diameter_mm: Optional[float] = None) -> VesselTree:
    """Virtual stent: restore the lumen over the stented length.

    Parameters
    ----------
    tree : VesselTree
        Tree with the lesion.
    lesion : Lesion
        The lesion to treat (from :func:`detect_lesions`).
    length_mm : float, optional
        Stent length centred on the lesion's throat; default: the lesion
        length plus 2 mm landing zones.
    diameter_mm : float, optional
        Nominal stent diameter; default: the interpolated reference diameter
        (the radius is then restored to the reference radius along the stent).

    Returns
    -------
    VesselTree
        A copy with the stented radius (never narrowed by the stent).
    """
    if not 0 <= lesion.branch < len(tree.branches):
        raise InputError(f"stent: lesion branch {lesion.branch} not in the tree")
    L = lesion.length_mm + 4.0 if length_mm is None else float(length_mm)
    if L <= 0 or (diameter_mm is not None and diameter_mm <= 0):
        raise InputError(f"stent length and diameter must be positive (length {L} mm, diameter {diameter_mm} mm)")
    out = tree.copy()
    b = out.branches[lesion.branch]
    s = b.arclength_mm
    inside = np.abs(s - lesion.throat_mm) <= L / 2.0
    if diameter_mm is None:
        new = _lesion_reference(b, lesion)
    else:
        new = np.full(len(s), diameter_mm / 2.0)
    b.radius_mm = np.where(inside, np.maximum(b.radius_mm, new), b.radius_mm)
    return out


def _lesion_reference(b, lesion: Lesion) -> np.ndarray:
    """Reference radius under the lesion: straight taper fitted outside the lesion and its shoulders."""
    margin = 0.25 * lesion.length_mm  # the lesion's shoulders reach beyond the r < 0.95 r_ref extent
    s, r = b.arclength_mm, b.radius_mm
    outside = (s < lesion.start_mm - margin) | (s > lesion.end_mm + margin)
    if outside.sum() >= 2:
        ref = compute_reference_radius(s[outside], r[outside], use=_away_from_junctions(b)[outside])
        a, b = np.polyfit(s[outside], ref, 1)
        return a * s + b
    return np.full(len(s), lesion.reference_radius_mm)
