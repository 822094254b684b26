"""Steady incompressible Navier-Stokes in a vessel lumen; virtual FFR.

Taylor-Hood P2/P1 (velocity u, pressure p), blood from ``mechanics.physiology``:

    rho (grad u) u - div(mu grad u) + grad p = 0,   div u = 0   in the lumen
    u = 0 on the wall;  u . n = 0 on symmetry planes (slip)
    u = Q x parabolic profile on the inlet (well posed with inertia, unlike a traction inlet)
    -p n + mu (grad u) n = -p_k n on outlet k

Resistance outlets close the model: p_k = P_v + R_k Q_k with the hyperaemic
Murray-law resistances of ``Physiology.outlet_resistances``. They are implicit:
p_k is a functional of the velocity inside the Newton residual, and its
Jacobian adds the rank-one terms R_k (int du.n)(int v.n) (Vignon-Clementel et
al., Comput Methods Appl Mech Eng 195:3776-3796, 2006), so the flow split
between outlets is part of the Newton solve. The inlet flow Q is set so that
the mean inlet pressure is the aortic pressure P_a by an outer secant
iteration on Q (one scalar, warm-started Newton solves). Newton starts from the
Stokes solution and ramps the convection term (Reynolds continuation,
halving the step when Newton fails). Backflow at outlets is damped by the
usual energy-stable term (Moghadam et al., Comput Mech 48:277-291, 2011).

FFR = p / P_a (P_a: the inlet pressure).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import ufl

from imaging.errors import InputError, SolverError
from imaging.lumen_mesh import SYMMETRY_TAG, LumenMesh
from imaging.ports import INLET, WALL_TAG
from mechanics import flow_compat as fc
from mechanics.flow_compat import MPI, PETSc, fem
from mechanics.flow_newton import NewtonSolver, check_cancel, newton
from mechanics.physiology import MMHG, CarreauYasuda, Physiology

log = logging.getLogger(__name__)

#: Velocity scale (m/s) below which the backflow term is smoothed.
BACKFLOW_EPS_MS = 1e-3


@dataclass
class FlowResult:
    """Solution of one 3D flow solve (fields on rank 0; other ranks get an empty result)."""

    ffr_min: float
    per_outlet: dict
    dofs: int
    seconds: float
    report: dict
    mesh: object = None  # pv.UnstructuredGrid: pressure_mmhg, velocity (m/s), ffr
    wall: object = None  # pv.PolyData: wss_pa, pressure_mmhg, ffr
    flows_m3s: dict = field(default_factory=dict)
    outlet_pressure_pa: dict = field(default_factory=dict)
    p_aortic_pa: float = float("nan")

    def ffr_along(self, polydata) -> np.ndarray:
        """FFR sampled at the points of ``polydata`` (e.g. centerlines, mm); nearest node outside."""
        from mechanics.fields import sample_point_field

        return sample_point_field(self.mesh, polydata, "ffr")

    def to_json(self) -> dict:
        return {"ffr_min": self.ffr_min, "per_outlet": self.per_outlet, "dofs": self.dofs,
                "seconds": self.seconds}


def solve_flow(
    lumen: Optional[LumenMesh],
    *,
    physiology: Optional[Physiology] = None,
    inlet_flow_m3s: Optional[float] = None,
    outlet_pressure_pa: Optional[dict] = None,
    viscosity: Optional[CarreauYasuda] = None,
    linear_solver: str = "auto",
    newton_rtol: float = 1e-8,
    max_newton: int = 25,
    comm=None,
    progress=None,
    cancelled=None,
) -> FlowResult:
    """Steady Navier-Stokes on a tagged lumen mesh.

    Parameters
    ----------
    lumen : LumenMesh
        Tet mesh in mm (only needed on rank 0 under MPI).
    physiology : Physiology, optional
        Blood (rho kg/m3, mu Pa s), aortic and venous pressures, outlet resistances.
    inlet_flow_m3s : float, optional
        Prescribe this total inlet flow (m3/s, parabolic profile) instead of
        adjusting it to the aortic pressure. Quarter models carry a quarter of it.
    outlet_pressure_pa : dict, optional
        Fixed outlet pressures (Pa) by port name instead of resistance outlets.
    viscosity : CarreauYasuda, optional
        Shear-thinning blood instead of the Newtonian ``physiology.mu``.
    linear_solver : str
        ``"direct"`` (MUMPS), ``"iterative"`` (GMRES + Schur fieldsplit) or ``"auto"``.
    newton_rtol : float
        Relative Newton increment tolerance.

    Returns
    -------
    FlowResult
        FFR = p / P_a with P_a the mean inlet pressure.

    Raises
    ------
    SolverError
        Newton or the linear solver failed; CancelledError when cancelled.
    """
    t0 = time.perf_counter()
    comm = comm or MPI.COMM_WORLD
    phys = physiology or Physiology()
    progress = progress or (lambda f, m: None)
    ports = comm.bcast(lumen.ports if comm.rank == 0 else None, root=0)
    sym = comm.bcast(bool(lumen.has_symmetry) if comm.rank == 0 else None, root=0)
    inlets = [p for p in ports if p.kind == INLET]
    outlets = [p for p in ports if p.kind != INLET]
    if len(inlets) != 1 or not outlets:
        raise InputError(f"ports: need exactly one inlet and at least one outlet, got {[p.name for p in ports]}")
    inlet = inlets[0]
    flow_factor = 4.0 if sym else 1.0  # quarter models of bodies of revolution
    scale_p = max(phys.p_aortic - phys.p_venous, 1.0)
    progress(0.02, "setting up Taylor-Hood P2/P1")
    mesh, ft = fc.lumen_to_dolfinx(lumen, comm)
    cell = mesh.ufl_cell()
    W = fem.FunctionSpace(mesh, ufl.MixedElement([ufl.VectorElement("CG", cell, 2), ufl.FiniteElement("CG", cell, 1)]))
    dofs = W.dofmap.index_map.size_global * W.dofmap.index_map_bs
    w = fem.Function(W)
    u, p = ufl.split(w)
    v, q = ufl.TestFunctions(W)
    dw = ufl.TrialFunction(W)
    n = ufl.FacetNormal(mesh)
    ds = ufl.Measure("ds", domain=mesh, subdomain_data=ft)
    rho = fem.Constant(mesh, PETSc.ScalarType(phys.rho))
    alpha = fem.Constant(mesh, PETSc.ScalarType(0.0))  # convection continuation 0 -> 1
    if viscosity is None:
        mu = fem.Constant(mesh, PETSc.ScalarType(phys.mu))
    else:
        D = ufl.sym(ufl.grad(u))
        gd = ufl.sqrt(2 * ufl.inner(D, D) + 1e-12)
        cy = viscosity
        mu = cy.mu_inf + (cy.mu0 - cy.mu_inf) * (1 + (cy.lam * gd) ** cy.a) ** ((cy.n - 1) / cy.a)
    F = (mu * ufl.inner(ufl.grad(u), ufl.grad(v)) + alpha * rho * ufl.inner(ufl.grad(u) * u, v)
         - p * ufl.div(v) - q * ufl.div(u)) * ufl.dx
    port_p = {}
    for port in outlets:
        port_p[port.name] = fem.Constant(mesh, PETSc.ScalarType(0.0))
        F += port_p[port.name] * ufl.inner(v, n) * ds(port.tag)
    for port in outlets:  # energy-stable backflow damping, with a smooth min(u.n, 0) so Newton does not chatter
        un = ufl.dot(u, n)
        un_minus = 0.5 * (un - ufl.sqrt(un * un + BACKFLOW_EPS_MS ** 2))
        F -= 0.5 * alpha * rho * un_minus * ufl.inner(u, v) * ds(port.tag)
    J = ufl.derivative(F, w, dw)
    mu_ref = phys.mu if viscosity is None else viscosity.mu_inf
    Pform = J + (1.0 / mu_ref) * ufl.split(dw)[1] * q * ufl.dx

    bcs, u_in = _dirichlet_bcs(W, mesh, ft, inlet, flow_factor, sym)
    # Parabolic profile scaled to carry exactly 1 m3/s through the discrete (faceted) inlet.
    unit_flux = -flow_factor * comm.allreduce(fem.assemble_scalar(fem.form(ufl.dot(u_in, n) * ds(inlet.tag))),
                                              op=MPI.SUM)
    if not unit_flux > 0:
        raise InputError(f"port {inlet.name}: the inlet profile carries no flow (check its center/normal/radius)")
    unit_profile = u_in.x.array.copy() / unit_flux
    flux = {pt.name: fem.form(ufl.dot(u, n) * ds(pt.tag)) for pt in ports}
    p_int = fem.form(p * ds(inlet.tag))
    area_in = comm.allreduce(fem.assemble_scalar(fem.form(fem.Constant(mesh, 1.0) * ds(inlet.tag))), op=MPI.SUM)

    def integral(form):
        return comm.allreduce(fem.assemble_scalar(form), op=MPI.SUM)

    # Boundary values: inlet flow Q (parabolic profile) and outlet pressures p_k.
    fixed = outlet_pressure_pa is not None
    if fixed:
        if inlet_flow_m3s is None:
            raise InputError("inlet_flow_m3s: needed with fixed outlet pressures")
        missing = [pt.name for pt in outlets if pt.name not in outlet_pressure_pa]
        if missing:
            raise InputError(f"outlet_pressure_pa: no pressure for outlets {missing}")
        for pt in outlets:
            port_p[pt.name].value = float(outlet_pressure_pa[pt.name])
        resist = {}
        q_total = float(inlet_flow_m3s)
    else:
        r = phys.outlet_resistances([pt.radius_mm for pt in outlets])
        resist = {pt.name: float(rk) for pt, rk in zip(outlets, r)}
        q_hyp = (phys.p_aortic - phys.p_venous) / np.array(list(resist.values()))
        q_total = float(inlet_flow_m3s) if inlet_flow_m3s is not None else 0.9 * float(q_hyp.sum())
    pressure_inlet = inlet_flow_m3s is None  # Q is adjusted to the aortic pressure (never with fixed outlets)
    state = {"q": q_total, "secant": []}

    def set_inlet_flow(qv: float) -> None:
        state["q"] = qv
        u_in.x.array[:] = unit_profile * qv

    set_inlet_flow(q_total)

    def outlet_pressures() -> None:
        """Resistance outlets, implicit: p_k = P_v + R_k Q_k(u) at the current state."""
        for pt in outlets:
            port_p[pt.name].value = phys.p_venous + resist[pt.name] * flow_factor * integral(flux[pt.name])

    low_rank = [] if fixed else [(resist[pt.name] * flow_factor, ufl.inner(v, n) * ds(pt.tag)) for pt in outlets]
    linear = linear_solver if linear_solver != "auto" else ("direct" if dofs <= fc.DIRECT_MAX_DOFS else "iterative")
    solver = NewtonSolver(W, F, J, Pform, bcs, w, linear, comm, low_rank=low_rank,
                          before_residual=None if fixed else outlet_pressures)
    fem.petsc.set_bc(w.vector, bcs)
    w.x.scatter_forward()

    def update_inlet() -> float:
        """Secant step on the inlet flow Q towards mean inlet pressure P_a; the relative change of Q."""
        q, p_in = state["q"], integral(p_int) / area_in
        pts = state["secant"]
        pts.append((q, p_in))
        q_new = q * (phys.p_aortic - phys.p_venous) / max(p_in - phys.p_venous, 1e-3 * scale_p)
        if len(pts) >= 2 and pts[-1][0] != pts[-2][0]:
            (q0, p0), (q1, p1) = pts[-2], pts[-1]
            slope = (p1 - p0) / (q1 - q0)
            if slope > 0:  # p_in rises with Q; otherwise keep the proportional step
                q_new = q1 + (phys.p_aortic - p1) / slope
        q_new = min(max(q_new, 0.25 * q), 4.0 * q)
        set_inlet_flow(q_new)
        return abs(q_new - q) / max(q, 1e-300)

    stages, newton_its, history = [0.0, 1.0], 0, []
    done_alpha, k = -1.0, 0
    while k < len(stages):
        a = stages[k]
        alpha.value = a
        saved = w.x.array.copy()
        saved_q = state["q"]
        state["secant"] = []
        target = 1e-6 if a == 1.0 else 1e-3  # boundary-value settling (relative)
        final_tol = newton_rtol if a == 1.0 else max(newton_rtol, 1e-5)
        first_tol = max(final_tol, 1e-4) if pressure_inlet else final_tol
        ok, its = newton(solver, a, first_tol, max_newton, history, cancelled,
                          lambda its, inc: progress(0.1 + 0.8 * min(1.0, 0.5 * (done_alpha + 1) + 0.05 * its),
                                                    f"Newton {its} (convection {a:.2f}): increment {inc:.1e}"))
        newton_its += its
        # Aortic pressure at the inlet: outer secant iteration on Q; Newton is warm-started and
        # solved only as tightly as Q has settled.
        change = 1.0
        for outer in range(40 if ok and pressure_inlet else 0):
            change = update_inlet()
            history[-1]["inlet_flow_change"] = change
            tol = max(final_tol, min(1e-4, 0.1 * change))
            ok, its = newton(solver, a, tol, max_newton, history, cancelled, lambda its, inc: None)
            newton_its += its
            if not ok or (change < target and (tol == final_tol or a < 1.0)):
                break
        if ok and pressure_inlet and change >= target:
            raise SolverError("aortic pressure inlet: the inlet flow did not settle in 40 updates")
        if ok:
            done_alpha = a
            k += 1
            continue
        # Newton failed: back off the convection ramp.
        w.x.array[:] = saved
        set_inlet_flow(saved_q)
        if a == 0.0 or a - max(done_alpha, 0.0) < 1.0 / 64:
            raise SolverError(f"Newton did not converge at convection factor {a:.3f} after {its} iterations "
                              f"(last increment {history[-1]['increment'] if history else float('nan'):.2e})")
        stages.insert(k, 0.5 * (max(done_alpha, 0.0) + a))
    progress(0.92, "post-processing")
    p_in = integral(p_int) / area_in
    flows = {pt.name: flow_factor * integral(flux[pt.name]) for pt in ports}
    p_out = {}
    for pt in outlets:
        area = integral(fem.form(fem.Constant(mesh, 1.0) * ds(pt.tag)))
        p_out[pt.name] = integral(fem.form(p * ds(pt.tag))) / area
    # The implicit outlets meet p = P_v + R Q exactly; net inflow at one means p_k < P_v there.
    back = sorted(nm for nm in resist if flows[nm] <= 0.0)
    if back:
        raise SolverError(f"resistance outlets: net inflow at {', '.join(back)} (outlet pressure below the venous "
                          "pressure); the outlet resistances are too low for this geometry")
    per_outlet = {nm: float(val / p_in) for nm, val in p_out.items()}
    seconds = time.perf_counter() - t0
    fields = _fields(w, mesh, comm, mu_ref)
    peak = comm.allreduce(fc.peak_memory_mb(), op=MPI.SUM)
    report = {"dofs": int(dofs), "cells": int(mesh.topology.index_map(3).size_global), "ranks": comm.size,
              "linear_solver": linear, "newton_iterations": newton_its,
              "factorizations": solver.factorizations,
              "continuation": [h["alpha"] for h in history], "final_increment": history[-1]["increment"],
              "final_residual": history[-1]["residual"], "ksp_iterations": [h["ksp_its"] for h in history],
              "seconds": round(seconds, 2), "peak_memory_mb": peak, "p_inlet_pa": p_in,
              "flows_m3s": flows, "outlet_pressure_pa": p_out, "resistances_pa_s_m3": resist,
              "reynolds_inlet": float(2 * phys.rho * abs(flows[inlet.name]) / (np.pi * inlet.radius_mm * 1e-3 * mu_ref))}
    result = FlowResult(min(per_outlet.values()), per_outlet, int(dofs), seconds, report,
                        flows_m3s=flows, outlet_pressure_pa=p_out, p_aortic_pa=p_in)
    if comm.rank == 0:
        result.mesh, result.wall = _result_grids(lumen, fields, p_in)
        report["ffr_field_min"] = float(np.min(result.mesh.point_data["ffr"]))
    progress(1.0, f"FFR min {result.ffr_min:.3f}")
    log.info("3D flow: %d dofs, %d Newton its, %.1f s, FFR min %.3f", dofs, newton_its, seconds, result.ffr_min)
    return result


def _dirichlet_bcs(W, mesh, ft, inlet, flow_factor, sym):
    """No-slip wall, slip symmetry planes, and the inlet profile (returned, scaled later)."""
    V, _ = W.sub(0).collapse()
    bcs = []
    u_in = fem.Function(V)  # parabolic profile on a (near-)circular inlet, 1 m3/s in total
    R = inlet.radius_mm * 1e-3
    c = inlet.center * 1e-3
    nrm = inlet.normal
    umax = 2.0 / (np.pi * R ** 2)

    def profile(x):
        d = x.T - c
        rr = np.linalg.norm(d - np.outer(d @ nrm, nrm), axis=1)
        return -np.outer(nrm, umax * np.clip(1 - (rr / R) ** 2, 0, None))

    u_in.interpolate(profile)
    dofs = fem.locate_dofs_topological((W.sub(0), V), 2, ft.find(inlet.tag))
    bcs.append(fem.dirichletbc(u_in, dofs, W.sub(0)))
    if sym:
        facets = ft.find(SYMMETRY_TAG)
        mid = fc.facet_midpoints(mesh, facets)
        for comp in (0, 1):
            sub = W.sub(0).sub(comp)
            Vc, _ = sub.collapse()
            zero = fem.Function(Vc)
            sel = facets[np.abs(mid[:, comp]) < 1e-9]
            dofs = fem.locate_dofs_topological((sub, Vc), 2, sel)
            bcs.append(fem.dirichletbc(zero, dofs, sub))
    zero = fem.Function(V)
    dofs = fem.locate_dofs_topological((W.sub(0), V), 2, ft.find(WALL_TAG))
    bcs.append(fem.dirichletbc(zero, dofs, W.sub(0)))
    return bcs, u_in


def _fields(w, mesh, comm, mu: float) -> dict:
    """Pressure, velocity and the rate-of-strain tensor gathered on rank 0 as (coords, values)."""
    uh = w.sub(0).collapse()
    ph = w.sub(1).collapse()
    V1 = fem.VectorFunctionSpace(mesh, ("CG", 1))
    Q1 = fem.FunctionSpace(mesh, ("CG", 1))
    u1, p1 = fem.Function(V1), fem.Function(Q1)
    u1.interpolate(uh)
    p1.interpolate(ph)
    T = fem.TensorFunctionSpace(mesh, ("DG", 1))
    s = fem.Function(T)
    s.interpolate(fem.Expression(mu * (ufl.grad(uh) + ufl.grad(uh).T), T.element.interpolation_points()))
    return {"u": fc.gather_nodal(V1, u1.x.array, comm), "p": fc.gather_nodal(Q1, p1.x.array, comm),
            "stress": fc.gather_nodal(T, s.x.array, comm)}


def _result_grids(lumen: LumenMesh, fields: dict, p_in: float):
    """pv grid with pressure_mmhg, velocity, ffr and the wall surface with wss_pa."""
    from scipy.spatial import cKDTree

    from imaging.lumen_mesh import WALL_TAG as WT

    grid = lumen.to_pyvista()
    pts = np.asarray(grid.points)
    p = fc.to_points(pts, *fields["p"]).ravel()
    grid.point_data["pressure_mmhg"] = p / MMHG
    grid.point_data["velocity"] = fc.to_points(pts, *fields["u"])
    grid.point_data["ffr"] = p / p_in
    wall = lumen.boundary(WT).clean().compute_normals(point_normals=True, cell_normals=False,
                                                       consistent_normals=True, auto_orient_normals=False)
    wp = np.asarray(wall.points)
    coords, svals = fields["stress"]
    idx = cKDTree(wp).query(coords / 1e-3)[1]
    acc = np.zeros((len(wp), 9))
    cnt = np.zeros(len(wp))
    near = np.linalg.norm(coords / 1e-3 - wp[idx], axis=1) < 1e-6 * max(1.0, np.ptp(wp))
    np.add.at(acc, idx[near], svals[near])
    np.add.at(cnt, idx[near], 1)
    stress = (acc / np.maximum(cnt, 1)[:, None]).reshape(-1, 3, 3)
    nrm = np.asarray(wall.point_data["Normals"])
    t = np.einsum("kij,kj->ki", stress, nrm)
    t -= np.einsum("ki,ki->k", t, nrm)[:, None] * nrm
    wall.point_data["wss_pa"] = np.linalg.norm(t, axis=1)
    wall.point_data["pressure_mmhg"] = fc.to_points(wp, *fields["p"]).ravel() / MMHG
    wall.point_data["ffr"] = wall.point_data["pressure_mmhg"] * MMHG / p_in
    return grid, wall


def solve_ffr_3d(surface, ports, *, physiology=None, centerlines=None, mesh_size_mm=None, progress=None,
                 cancelled=None) -> FlowResult:
    """Virtual FFR from a lumen surface: mesh (gmsh), 3D Navier-Stokes, FFR per outlet.

    Parameters
    ----------
    surface : pv.PolyData
        Lumen surface in mm, open at the ports or capped.
    ports : list of imaging.ports.Port
        Inlet (aortic pressure) and outlets (hyperaemic resistance).
    physiology : Physiology, optional
        Blood and boundary-condition physiology (default ``Physiology()``).
    centerlines : pv.PolyData, optional
        Polylines with ``Radius`` (mm) for radius-based mesh sizing.
    mesh_size_mm : float, optional
        Uniform element size (mm) instead of radius-based sizing.

    Returns
    -------
    FlowResult
        ``ffr_min``, ``per_outlet`` (by port name), ``dofs``, ``seconds``, ``report``, fields.
    """
    from imaging.lumen_mesh import mesh_lumen_surface

    progress = progress or (lambda f, m: None)
    t0 = time.perf_counter()
    lumen = mesh_lumen_surface(surface, ports, mesh_size_mm=mesh_size_mm, centerlines=centerlines,
                               progress=lambda f, m: progress(0.2 * f, m), cancelled=cancelled)
    check_cancel(cancelled)
    res = solve_flow(lumen, physiology=physiology, progress=lambda f, m: progress(0.2 + 0.8 * f, m),
                     cancelled=cancelled, comm=MPI.COMM_SELF)
    res.seconds = time.perf_counter() - t0
    res.report["mesh_tets"] = lumen.n_tets
    res.report["seconds_total"] = round(res.seconds, 2)
    return res
