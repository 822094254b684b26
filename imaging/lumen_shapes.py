"""Analytic lumen geometries for verification: pipe, stenosed tube, FDA nozzle.

All are bodies of revolution about the z axis, meshed with gmsh's OpenCASCADE
kernel; a quarter model (symmetry planes x = 0 and y = 0 tagged
``SYMMETRY_TAG``) is allowed. Lengths in mm, flow along +z, inlet at the
smallest z.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

from imaging.errors import InputError, MeshError
from imaging.lumen_mesh import SYMMETRY_TAG, LumenMesh, extract_gmsh_mesh, generate_volume, radius_size_fn
from imaging.ports import FIRST_OUTLET_TAG, INLET, INLET_TAG, OUTLET, WALL_TAG, Port

log = logging.getLogger(__name__)

#: FDA benchmark nozzle (Stewart et al. 2012; shared/data/README.md fda_nozzle), mm.
FDA_R_TUBE = 6.0
FDA_R_THROAT = 2.0
FDA_THROAT_LENGTH = 40.0
FDA_CONE_LENGTH = (FDA_R_TUBE - FDA_R_THROAT) / np.tan(np.radians(10.0))  # 22.685 mm


def mesh_axisymmetric(
    profile: Sequence[tuple[float, float]],
    *,
    radius_fraction: float = 0.3,
    wall_fraction: float = 0.5,
    h_min_mm: Optional[float] = None,
    h_max_mm: Optional[float] = None,
    mesh_size_mm: Optional[float] = None,
    smooth: Optional[tuple[int, int]] = None,
    quarter: bool = False,
    order: int = 1,
    size_fn=None,
) -> LumenMesh:
    """Tet mesh of the body of revolution of a radius profile r(z).

    Parameters
    ----------
    profile : sequence of (z_mm, r_mm)
        Wall radius along the axis, z increasing; inlet at the first z.
    radius_fraction, wall_fraction : float
        Element size = radius_fraction x local radius, times wall_fraction at the wall.
    h_min_mm, h_max_mm : float, optional
        Size clamp, mm.
    mesh_size_mm : float, optional
        Uniform element size instead (mm).
    smooth : (int, int), optional
        Profile point index range joined by a spline (a lesion); straight segments elsewhere.
    quarter : bool
        Mesh only x >= 0, y >= 0 and tag the two cut planes ``SYMMETRY_TAG``.
    order : int
        Geometry order (2 gives curved P2 tets).
    size_fn : callable, optional
        Own size function of points (n, 3) -> (n,) mm.

    Returns
    -------
    LumenMesh
        With ports ``inlet`` (tag 2) and ``outlet_1`` (tag 3).
    """
    import gmsh

    prof = np.asarray(profile, dtype=float)
    if prof.ndim != 2 or prof.shape[1] != 2 or len(prof) < 2:
        raise InputError("profile: expected a sequence of at least two (z_mm, r_mm) pairs")
    if np.any(prof[:, 1] <= 0) or np.any(np.diff(prof[:, 0]) < 0):
        raise InputError("profile: radii must be positive and z non-decreasing")
    z0, z1 = prof[0, 0], prof[-1, 0]
    r_of_z = _radius_interpolator(prof)
    if size_fn is None:
        if mesh_size_mm is not None:
            size_fn = lambda x: np.full(len(x), float(mesh_size_mm))  # noqa: E731
        else:
            def wall_dist(x):
                return r_of_z(x[:, 2]) - np.hypot(x[:, 0], x[:, 1])

            size_fn = radius_size_fn(lambda x: r_of_z(x[:, 2]), wall_dist, radius_fraction, wall_fraction)
    h_min = h_min_mm or (mesh_size_mm or 0.5 * radius_fraction * wall_fraction * prof[:, 1].min())
    h_max = h_max_mm or (mesh_size_mm or radius_fraction * prof[:, 1].max())
    was_init = gmsh.isInitialized()
    if not was_init:
        gmsh.initialize()
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("axisymmetric")
        occ = gmsh.model.occ
        axis_in, axis_out = occ.addPoint(0, 0, z0), occ.addPoint(0, 0, z1)
        wall_pts = [occ.addPoint(r, 0, z) for z, r in prof]
        wall_curves = []
        i = 0
        while i < len(prof) - 1:
            if smooth and smooth[0] <= i < smooth[1]:
                wall_curves.append(occ.addSpline(wall_pts[smooth[0]:smooth[1] + 1]))
                i = smooth[1]
                continue
            if not np.allclose(prof[i], prof[i + 1]):
                wall_curves.append(occ.addLine(wall_pts[i], wall_pts[i + 1]))
            i += 1
        curves = [occ.addLine(axis_in, wall_pts[0]), *wall_curves, occ.addLine(wall_pts[-1], axis_out),
                  occ.addLine(axis_out, axis_in)]
        face = occ.addPlaneSurface([occ.addCurveLoop(curves)])
        occ.revolve([(2, face)], 0, 0, 0, 0, 0, 1, np.pi / 2 if quarter else 2 * np.pi)
        occ.synchronize()
        vols = gmsh.model.getEntities(3)
        bnd = gmsh.model.getBoundary(vols, oriented=False)
        groups: dict[int, list[int]] = {}
        for _, s in bnd:
            groups.setdefault(_classify_face(gmsh, s, z0, z1), []).append(s)
        for tag, ents in groups.items():
            gmsh.model.addPhysicalGroup(2, ents, tag)
        gmsh.model.addPhysicalGroup(3, [v for _, v in vols], 1)
        generate_volume(gmsh, size_fn, h_min, h_max, order=order)
        ports = [Port("inlet", INLET, (0, 0, z0), (0, 0, -1), float(prof[0, 1]), INLET_TAG),
                 Port("outlet_1", OUTLET, (0, 0, z1), (0, 0, 1), float(prof[-1, 1]), FIRST_OUTLET_TAG)]
        info = {"shape": "axisymmetric", "quarter": quarter, "h_min_mm": h_min, "h_max_mm": h_max,
                "profile": prof.tolist()}
        mesh = extract_gmsh_mesh(gmsh, ports, info)
    except (InputError, MeshError):
        raise
    except Exception as exc:
        raise MeshError(f"gmsh failed on the axisymmetric profile: {exc}") from exc
    finally:
        if gmsh.isInitialized():
            gmsh.model.remove()
            if not was_init:
                gmsh.finalize()
    log.info("axisymmetric mesh: %d tets (order %d, quarter=%s)", mesh.n_tets, order, quarter)
    return mesh


def _classify_face(gmsh, s: int, z0: float, z1: float) -> int:
    xmin, ymin, zmin, xmax, ymax, zmax = gmsh.model.getBoundingBox(2, s)
    eps = 1e-6 * max(1.0, abs(z1 - z0))
    if zmax - zmin < eps and abs(zmin - z0) < eps:
        return INLET_TAG
    if zmax - zmin < eps and abs(zmin - z1) < eps:
        return FIRST_OUTLET_TAG
    if xmax - xmin < eps or ymax - ymin < eps:
        return SYMMETRY_TAG
    return WALL_TAG


def _radius_interpolator(prof: np.ndarray):
    z, r = prof[:, 0], prof[:, 1]
    # Steps (repeated z): np.interp takes the later value there, fine for sizing.
    return lambda q: np.interp(q, z, r)


def mesh_pipe(radius_mm: float, length_mm: float, **kw) -> LumenMesh:
    """Straight circular pipe along z from 0 to ``length_mm`` (see ``mesh_axisymmetric``)."""
    if radius_mm <= 0 or length_mm <= 0:
        raise InputError(f"pipe: radius_mm and length_mm must be positive, got {radius_mm}, {length_mm}")
    return mesh_axisymmetric([(0.0, radius_mm), (length_mm, radius_mm)], **kw)


def stenosis_profile(radius_mm: float, length_mm: float, severity: float, lesion_length_mm: float,
                     center_mm: Optional[float] = None, n: int = 41) -> np.ndarray:
    """(z, r) of a tube with a smooth cosine lesion.

    ``severity`` is the diameter stenosis fraction: r_min = (1 - severity) R,
    r(z) = R [1 - severity/2 (1 + cos(2 pi (z - zc) / Ls))] over |z - zc| < Ls/2.
    """
    if not 0.0 <= severity < 1.0:
        raise InputError(f"severity: diameter stenosis fraction in [0, 1), got {severity}")
    zc = 0.5 * length_mm if center_mm is None else center_mm
    if lesion_length_mm <= 0 or zc - lesion_length_mm / 2 <= 0 or zc + lesion_length_mm / 2 >= length_mm:
        raise InputError("lesion_length_mm: the lesion must fit inside the tube")
    zl = np.linspace(zc - lesion_length_mm / 2, zc + lesion_length_mm / 2, n)
    rl = radius_mm * (1 - severity / 2 * (1 + np.cos(2 * np.pi * (zl - zc) / lesion_length_mm)))
    return np.vstack([[0.0, radius_mm], np.column_stack([zl, rl]), [length_mm, radius_mm]])


def mesh_stenosed_tube(radius_mm: float, length_mm: float, severity: float, lesion_length_mm: float,
                       center_mm: Optional[float] = None, **kw) -> LumenMesh:
    """Tube with a smooth (cosine) axisymmetric lesion of given diameter severity (see ``stenosis_profile``)."""
    prof = stenosis_profile(radius_mm, length_mm, severity, lesion_length_mm, center_mm)
    # Straight inflow/outflow segments + a spline over the lesion (the cosine has zero slope at its ends).
    mesh = mesh_axisymmetric(prof, smooth=(1, len(prof) - 2), **kw)
    mesh.info.update(severity=severity, lesion_length_mm=lesion_length_mm)
    return mesh


def fda_profile(config: str = "sudden_expansion", inlet_length_mm: float = 60.0,
                outlet_length_mm: float = 120.0) -> np.ndarray:
    """(z, r) of the FDA nozzle, z in mm as in the measured data (step at z = 0).

    ``sudden_expansion``: cone -62.685..-40, throat -40..0, step 2 -> 6 mm at 0.
    ``conical_diffuser``: step 6 -> 2 mm at 0, throat 0..40, cone 40..62.685.
    """
    rt, rT, lt, lc = FDA_R_TUBE, FDA_R_THROAT, FDA_THROAT_LENGTH, FDA_CONE_LENGTH
    if config == "sudden_expansion":
        zc = -lt - lc
        return np.array([[zc - inlet_length_mm, rt], [zc, rt], [-lt, rT], [0.0, rT], [0.0, rt],
                         [outlet_length_mm, rt]])
    if config == "conical_diffuser":
        return np.array([[-inlet_length_mm, rt], [0.0, rt], [0.0, rT], [lt, rT], [lt + lc, rt],
                         [lt + lc + outlet_length_mm, rt]])
    raise InputError(f"config: 'sudden_expansion' or 'conical_diffuser', got {config!r}")


def mesh_fda_nozzle(config: str = "sudden_expansion", *, inlet_length_mm: float = 60.0,
                    outlet_length_mm: float = 120.0, h_throat_mm: float = 0.3, h_far_mm: float = 1.2,
                    jet_length_mm: float = 80.0, quarter: bool = True, order: int = 1) -> LumenMesh:
    """FDA benchmark nozzle (shared/data fda_nozzle), refined in the throat and the jet.

    Parameters
    ----------
    config : str
        ``sudden_expansion`` or ``conical_diffuser``.
    inlet_length_mm, outlet_length_mm : float
        Straight tube lengths before the nozzle and after it (mm).
    h_throat_mm : float
        Element size in the throat and the jet core (mm).
    h_far_mm : float
        Element size far from the jet (mm).
    jet_length_mm : float
        Length downstream of the throat exit over which the jet is refined (mm).
    quarter : bool
        Quarter model with symmetry planes (slip there).
    """
    prof = fda_profile(config, inlet_length_mm, outlet_length_mm)
    exit_z = 0.0 if config == "sudden_expansion" else FDA_THROAT_LENGTH + FDA_CONE_LENGTH
    start_z = -FDA_THROAT_LENGTH - FDA_CONE_LENGTH if config == "sudden_expansion" else 0.0

    def size(x):
        rho = np.hypot(x[:, 0], x[:, 1])
        z = x[:, 2]
        # Jet region: radius grows slowly from the throat radius downstream of the exit.
        jet_r = FDA_R_THROAT * (1.0 + 0.6 * np.clip((z - exit_z) / jet_length_mm, 0, 1)) + 1.0
        in_throat = (z >= start_z - 2.0) & (z <= exit_z)
        in_jet = (z > exit_z) & (z < exit_z + jet_length_mm) & (rho < jet_r)
        h = np.full(len(x), h_far_mm)
        grow = np.clip((z - exit_z) / jet_length_mm, 0, 1)
        h = np.where(in_jet, h_throat_mm * (1.0 + 1.5 * grow), h)
        h = np.where(in_throat, h_throat_mm, h)
        shear = (z > exit_z) & (z < exit_z + jet_length_mm) & (np.abs(rho - FDA_R_THROAT) < 1.5)
        h = np.where(shear, np.minimum(h, h_throat_mm * (1.0 + grow)), h)
        return h

    mesh = mesh_axisymmetric(prof, quarter=quarter, order=order, size_fn=size, h_min_mm=0.5 * h_throat_mm,
                             h_max_mm=h_far_mm)
    mesh.info.update(config=config, h_throat_mm=h_throat_mm, h_far_mm=h_far_mm)
    return mesh
