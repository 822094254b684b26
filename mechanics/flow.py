"""Steady incompressible Navier-Stokes in a vessel lumen; virtual FFR.

Taylor-Hood P2/P1 (velocity u, pressure p), blood from ``mechanics.physiology``:

    rho (grad u) u - div(mu grad u) + grad p = 0,   div u = 0   in the lumen
    u = 0 on the wall;  u . n = 0 on symmetry planes (slip)
    -p n + mu (grad u) n = -p_k n on pressure ports (inlet: P_a; outlet k: p_k)

Resistance outlets close the model: p_k = P_v + R_k Q_k with the hyperaemic
Murray-law resistances of ``Physiology.outlet_resistances``. The outlet
pressures are updated before every Newton step from a secant model of the
3D resistance upstream of each outlet (R3D_k = (P_in - p_k) / Q_k), so the
coupled fixed point converges together with Newton. Newton starts from the
Stokes solution and ramps the convection term (Reynolds continuation,
halving the step when Newton fails). Backflow at outlets is damped by the
usual energy-stable term (Moghadam et al., Comput Mech 48:277-291, 2011).

FFR = p / P_a (P_a: the inlet pressure).
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import ufl

from imaging.errors import InputError, SolverError
from imaging.lumen_mesh import SYMMETRY_TAG, LumenMesh
from imaging.ports import INLET, WALL_TAG
from mechanics import flow_compat as fc
from mechanics.flow_compat import MPI, PETSc, fem
from mechanics.physiology import MMHG, CarreauYasuda, Physiology

log = logging.getLogger(__name__)


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
        pts = np.asarray(polydata.points if hasattr(polydata, "points") else polydata, dtype=float)
        from scipy.spatial import cKDTree

        sampled = polydata.sample(self.mesh) if hasattr(polydata, "sample") else None
        near = np.asarray(self.mesh.point_data["ffr"])[cKDTree(self.mesh.points).query(pts)[1]]
        if sampled is None:
            return near
        valid = np.asarray(sampled.point_data["vtkValidPointMask"]).astype(bool)
        return np.where(valid, np.asarray(sampled.point_data["ffr"]), near)

    def to_json(self) -> dict:
        return {"ffr_min": self.ffr_min, "per_outlet": self.per_outlet, "dofs": self.dofs,
                "seconds": self.seconds}


def _check(cancelled) -> None:
    if cancelled is not None and cancelled():
        raise CancelledError("cancelled by user")


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
        Prescribe this total flow (m3/s) as a parabolic inlet profile instead of
        the aortic pressure. Quarter models carry a quarter of it.
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
    pressure_ports = outlets if inlet_flow_m3s is not None else [inlet, *outlets]
    for port in pressure_ports:
        port_p[port.name] = fem.Constant(mesh, PETSc.ScalarType(0.0))
        F += port_p[port.name] * ufl.inner(v, n) * ds(port.tag)
    for port in outlets:  # energy-stable backflow damping
        un = ufl.dot(u, n)
        F -= 0.5 * alpha * rho * ufl.conditional(ufl.lt(un, 0.0), un, 0.0) * ufl.inner(u, v) * ds(port.tag)
    J = ufl.derivative(F, w, dw)
    mu_ref = phys.mu if viscosity is None else viscosity.mu_inf
    Pform = J + (1.0 / mu_ref) * ufl.split(dw)[1] * q * ufl.dx

    bcs = _dirichlet_bcs(W, mesh, ft, inlet, inlet_flow_m3s, flow_factor, sym)
    flux = {pt.name: fem.form(ufl.dot(u, n) * ds(pt.tag)) for pt in ports}
    p_int = fem.form(p * ds(inlet.tag))
    area_in = comm.allreduce(fem.assemble_scalar(fem.form(fem.Constant(mesh, 1.0) * ds(inlet.tag))), op=MPI.SUM)

    def integral(form):
        return comm.allreduce(fem.assemble_scalar(form), op=MPI.SUM)

    # Outlet boundary conditions.
    fixed = outlet_pressure_pa is not None
    if fixed:
        missing = [pt.name for pt in outlets if pt.name not in outlet_pressure_pa]
        if missing:
            raise InputError(f"outlet_pressure_pa: no pressure for outlets {missing}")
        for pt in outlets:
            port_p[pt.name].value = float(outlet_pressure_pa[pt.name])
        resist = {}
    else:
        r = phys.outlet_resistances([pt.radius_mm for pt in outlets])
        resist = {pt.name: float(rk) for pt, rk in zip(outlets, r)}
        for pt in outlets:  # first guess: 10 % of the driving pressure lost upstream
            port_p[pt.name].value = phys.p_venous + 0.9 * (phys.p_aortic - phys.p_venous)
    if inlet_flow_m3s is None:
        port_p[inlet.name].value = phys.p_aortic

    linear = linear_solver if linear_solver != "auto" else ("direct" if dofs <= fc.DIRECT_MAX_DOFS else "iterative")
    solver = _NewtonSolver(W, F, J, Pform, bcs, w, linear, comm)
    fem.petsc.set_bc(w.vector, bcs)
    w.x.scatter_forward()

    def update_outlets() -> float:
        """Secant update of resistance-outlet pressures; returns the largest change (Pa)."""
        if fixed:
            return 0.0
        p_in = integral(p_int) / area_in
        change = 0.0
        for pt in outlets:
            qk = flow_factor * integral(flux[pt.name])
            pk = float(port_p[pt.name].value)
            if qk > 0 and p_in - pk > 0:
                r3d = (p_in - pk) / qk
                new = (phys.p_venous * r3d + resist[pt.name] * p_in) / (r3d + resist[pt.name])
            else:
                new = pk - 0.05 * (p_in - phys.p_venous)
            change = max(change, abs(new - pk))
            port_p[pt.name].value = new
        return change

    stages, newton_its, history = [0.0, 1.0], 0, []
    done_alpha, k = -1.0, 0
    while k < len(stages):
        a = stages[k]
        alpha.value = a
        saved = w.x.array.copy()
        saved_p = {nm: float(c.value) for nm, c in port_p.items()}
        converged, its = False, 0
        tol = newton_rtol if a == 1.0 else max(newton_rtol, 1e-5)
        for its in range(1, max_newton + 1):
            _check(cancelled)
            first = solver.step()
            change = 0.0
            if not first.get("ok", True):
                break
            change = update_outlets()
            newton_its += 1
            history.append({"alpha": a, "increment": first["increment"], "residual": first["residual"],
                            "outlet_change_pa": change, "ksp_its": first["ksp_its"]})
            progress(0.1 + 0.8 * min(1.0, (done_alpha + 1) / 2 + 0.05 * its),
                     f"Newton {its} (convection {a:.2f}): increment {first['increment']:.1e}")
            scale_p = max(phys.p_aortic, 1.0)
            if first["increment"] < tol and change < 1e-7 * scale_p:
                converged = True
                break
            if not np.isfinite(first["increment"]) or (its > 3 and first["increment"] > 1e3):
                break
        if converged:
            done_alpha = a
            k += 1
            continue
        # Newton failed: back off the convection ramp.
        w.x.array[:] = saved
        for nm, val in saved_p.items():
            port_p[nm].value = val
        new = 0.5 * (done_alpha + a) if done_alpha >= 0 else 0.0
        if a - max(done_alpha, 0.0) < 1.0 / 64 or a == 0.0:
            raise SolverError(f"Newton did not converge at convection factor {a:.3f} after {its} iterations "
                              f"(last increment {history[-1]['increment'] if history else float('nan'):.2e})")
        stages.insert(k, new)
    progress(0.92, "post-processing")
    p_in = integral(p_int) / area_in
    flows = {pt.name: flow_factor * integral(flux[pt.name]) for pt in ports}
    p_out = {}
    for pt in outlets:
        area = integral(fem.form(fem.Constant(mesh, 1.0) * ds(pt.tag)))
        p_out[pt.name] = integral(fem.form(p * ds(pt.tag))) / area
    per_outlet = {nm: float(val / p_in) for nm, val in p_out.items()}
    seconds = time.perf_counter() - t0
    fields = _fields(w, mesh, comm, mu_ref)
    peak = comm.allreduce(fc.peak_memory_mb(), op=MPI.SUM)
    report = {"dofs": int(dofs), "cells": int(mesh.topology.index_map(3).size_global), "ranks": comm.size,
              "linear_solver": linear, "newton_iterations": newton_its,
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


def _dirichlet_bcs(W, mesh, ft, inlet, inlet_flow, flow_factor, sym):
    V, _ = W.sub(0).collapse()
    bcs = []
    if inlet_flow is not None:  # parabolic profile on a (near-)circular inlet
        u_in = fem.Function(V)
        R = inlet.radius_mm * 1e-3
        c = inlet.center * 1e-3
        nrm = inlet.normal
        umax = 2.0 * inlet_flow / flow_factor / (np.pi * R ** 2 / flow_factor)

        def profile(x):
            d = x.T - c
            rr = np.linalg.norm(d - np.outer(d @ nrm, nrm), axis=1)
            mag = umax * np.clip(1 - (rr / R) ** 2, 0, None)
            return -np.outer(nrm, mag)

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
    return bcs


class _NewtonSolver:
    """Newton steps J dw = F, w -= dw, with MUMPS or GMRES + Schur fieldsplit."""

    def __init__(self, W, F, J, Pform, bcs, w, linear, comm):
        import dolfinx.fem.petsc  # noqa: F401

        self.F, self.J = fem.form(F), fem.form(J)
        self.P = fem.form(Pform) if linear == "iterative" else None
        self.bcs, self.w = bcs, w
        self.A = fem.petsc.create_matrix(self.J)
        self.Pm = fem.petsc.create_matrix(self.P) if self.P is not None else None
        self.b = fem.petsc.create_vector(self.F)
        self.dx = self.A.createVecRight()
        self.ksp = PETSc.KSP().create(comm)
        self.ksp.setOperators(self.A, self.Pm or self.A)
        if linear == "iterative":
            self.ksp.getPC().setType("fieldsplit")
            is_u, is_p = fc.split_is(W)
            self.ksp.getPC().setFieldSplitIS(("u", is_u), ("p", is_p))
            fc.set_options(self.ksp, f"flow{id(self)}_", fc.ITERATIVE_KSP)
        else:
            fc.set_options(self.ksp, f"flow{id(self)}_", fc.DIRECT_KSP)

    def step(self) -> dict:
        A, b, w = self.A, self.b, self.w
        A.zeroEntries()
        fem.petsc.assemble_matrix(A, self.J, bcs=self.bcs)
        A.assemble()
        if self.Pm is not None:
            self.Pm.zeroEntries()
            fem.petsc.assemble_matrix(self.Pm, self.P, bcs=self.bcs)
            self.Pm.assemble()
        with b.localForm() as loc:
            loc.set(0.0)
        fem.petsc.assemble_vector(b, self.F)
        fem.petsc.apply_lifting(b, [self.J], bcs=[self.bcs], x0=[w.vector], scale=-1.0)
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        fem.petsc.set_bc(b, self.bcs, w.vector, -1.0)
        residual = b.norm()
        self.ksp.solve(b, self.dx)
        reason = self.ksp.getConvergedReason()
        if reason < 0:
            raise SolverError(f"linear solver failed (PETSc reason {reason}) after {self.ksp.getIterationNumber()} "
                              "iterations; try linear_solver='direct' on a coarser mesh")
        w.vector.axpy(-1.0, self.dx)
        w.x.scatter_forward()
        inc = self.dx.norm() / max(w.vector.norm(), 1e-300)
        return {"increment": float(inc), "residual": float(residual), "ksp_its": int(self.ksp.getIterationNumber()),
                "ok": bool(np.isfinite(inc))}


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
    _check(cancelled)
    res = solve_flow(lumen, physiology=physiology, progress=lambda f, m: progress(0.2 + 0.8 * f, m),
                     cancelled=cancelled, comm=MPI.COMM_SELF)
    res.seconds = time.perf_counter() - t0
    res.report["mesh_tets"] = lumen.n_tets
    res.report["seconds_total"] = round(res.seconds, 2)
    return res
