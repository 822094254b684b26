"""Soft-tissue mechanics with dolfinx: linear elasticity and compressible neo-Hookean.

Displacements in mm, stresses in Pa... in consistent units: lengths in mm and
moduli in Pa give forces in Pa*mm^2 = uN, which is fine since every load here
is a prescribed displacement or a pressure in Pa.
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import ufl
from dolfinx import fem
from dolfinx.fem.petsc import LinearProblem, NonlinearProblem
from dolfinx.nls.petsc import NewtonSolver
from mpi4py import MPI
from petsc4py import PETSc

from imaging.errors import InputError, SolverError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress
from mechanics.fem_compat import ELASTICITY_KSP, boundary_dofs, rigid_body_modes, scalar_space, vector_space

#: Callable mapping points (3, n) to displacements (3, n), mm.
DisplacementFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class Material:
    """Isotropic material: Young's modulus (Pa) and Poisson's ratio."""

    youngs_modulus_pa: float
    poisson_ratio: float

    def __post_init__(self) -> None:
        if self.youngs_modulus_pa <= 0:
            raise InputError(f"youngs_modulus_pa={self.youngs_modulus_pa}: must be positive")
        if not -1.0 < self.poisson_ratio < 0.5:
            raise InputError(f"poisson_ratio={self.poisson_ratio}: must be in (-1, 0.5)")

    @property
    def mu(self) -> float:
        return self.youngs_modulus_pa / (2.0 * (1.0 + self.poisson_ratio))

    @property
    def lmbda(self) -> float:
        nu = self.poisson_ratio
        return self.youngs_modulus_pa * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))


@dataclass
class TissueProblem:
    """Mesh, tagged boundaries, loads and material of one solve.

    ``dirichlet`` maps a facet tag to a displacement function (or None to
    fix it); where tagged faces share nodes, later entries win; ``dirichlet_components`` maps a tag to (component, value) for
    symmetry planes; ``pressure_pa`` maps a tag to a pressure acting against
    the outward normal.
    """

    mesh: object
    facet_tags: object
    material: Material
    dirichlet: dict[int, Optional[DisplacementFn]] = field(default_factory=dict)
    dirichlet_components: dict[int, tuple[int, float]] = field(default_factory=dict)
    pressure_pa: dict[int, float] = field(default_factory=dict)
    degree: int = 2


@dataclass
class SimulationResult:
    """Displacement field and the solver report."""

    displacement: object  # dolfinx Function
    report: dict

    def displacement_at_dofs(self) -> tuple[np.ndarray, np.ndarray]:
        """(points (n, 3), displacement (n, 3)) at the dof coordinates, mm."""
        V = self.displacement.function_space
        n = V.dofmap.index_map.size_local
        x = V.tabulate_dof_coordinates()[:n]
        return x, self.displacement.x.array[: 3 * n].reshape(-1, 3)


def _boundary_conditions(problem: TissueProblem, V, scale: float = 1.0) -> list:
    bcs = []
    for tag, fn in problem.dirichlet.items():
        g = fem.Function(V)
        if fn is not None:
            g.interpolate(lambda x, fn=fn: scale * np.asarray(fn(x), dtype=float))
        bcs.append(fem.dirichletbc(g, boundary_dofs(V, problem.facet_tags, tag)))
    for tag, (comp, value) in problem.dirichlet_components.items():
        Vi, _ = V.sub(comp).collapse()
        dofs = fem.locate_dofs_topological((V.sub(comp), Vi), problem.mesh.topology.dim - 1,
                                           problem.facet_tags.find(tag))
        g = fem.Function(Vi)
        g.x.array[:] = scale * value
        bcs.append(fem.dirichletbc(g, dofs, V.sub(comp)))
    if not bcs:
        raise InputError("no Dirichlet boundary: the tissue would float freely (fix or move a boundary)")
    return bcs


def _pressure_term(problem: TissueProblem, v, n, scale=1.0, F=None):
    """Work of pressures on tagged facets (a follower load when the deformation gradient F is given)."""
    ds = ufl.Measure("ds", domain=problem.mesh, subdomain_data=problem.facet_tags)
    term = 0
    for tag, p in problem.pressure_pa.items():
        if F is None:
            term += -scale * p * ufl.dot(n, v) * ds(tag)
        else:
            J = ufl.det(F)
            term += -scale * p * J * ufl.dot(ufl.inv(F).T * n, v) * ds(tag)
    return term


def _report(V, started: float, **extra) -> dict:
    return {"dofs": int(V.dofmap.index_map.size_global * V.dofmap.index_map_bs),
            "degree": int(V.ufl_element().degree()), "seconds": round(time.perf_counter() - started, 3),
            "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1), **extra}


def solve_tissue_linear(
    problem: TissueProblem,
    *,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> SimulationResult:
    """Small-strain linear elasticity (P1 or P2), CG + GAMG with rigid-body near-nullspace.

    Raises
    ------
    SolverError
        If the Krylov solver does not converge.
    """
    progress = progress or no_progress
    t0 = time.perf_counter()
    check_cancelled(cancelled)
    V = vector_space(problem.mesh, problem.degree)
    mu, lmbda = problem.material.mu, problem.material.lmbda
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)

    def sigma(w):
        eps = ufl.sym(ufl.grad(w))
        return 2.0 * mu * eps + lmbda * ufl.tr(eps) * ufl.Identity(3)

    n = ufl.FacetNormal(problem.mesh)
    a = ufl.inner(sigma(u), ufl.grad(v)) * ufl.dx
    zero = fem.Constant(problem.mesh, PETSc.ScalarType((0.0, 0.0, 0.0)))
    L = ufl.dot(zero, v) * ufl.dx + _pressure_term(problem, v, n)
    progress(0.1, "Assembling")
    lp = LinearProblem(a, L, bcs=_boundary_conditions(problem, V), petsc_options=ELASTICITY_KSP)
    lp.A.setNearNullSpace(rigid_body_modes(V))
    check_cancelled(cancelled)
    progress(0.3, "Solving (CG + GAMG)")
    uh = lp.solve()
    reason = lp.solver.getConvergedReason()
    if reason <= 0:
        raise SolverError(f"linear elasticity: CG did not converge (PETSc reason {reason})")
    progress(1.0, "Solved")
    report = _report(V, t0, solver="cg+gamg", iterations=int(lp.solver.getIterationNumber()),
                     residual=float(lp.solver.getResidualNorm()))
    return SimulationResult(uh, report)


def solve_tissue_neohookean(
    problem: TissueProblem,
    *,
    load_steps: int = 5,
    max_iterations: int = 25,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> SimulationResult:
    """Compressible neo-Hookean hyperelasticity, Newton with load stepping.

    psi = mu/2 (I_C - 3) - mu ln J + lambda/2 (ln J)^2. Boundary displacements
    and pressures are ramped over ``load_steps`` equal increments.

    Raises
    ------
    SolverError
        If Newton diverges at some load step (names the step).
    """
    progress = progress or no_progress
    t0 = time.perf_counter()
    V = vector_space(problem.mesh, problem.degree)
    mu = fem.Constant(problem.mesh, PETSc.ScalarType(problem.material.mu))
    lmbda = fem.Constant(problem.mesh, PETSc.ScalarType(problem.material.lmbda))
    u, v = fem.Function(V), ufl.TestFunction(V)
    F = ufl.variable(ufl.Identity(3) + ufl.grad(u))
    C = F.T * F
    J = ufl.det(F)
    psi = (mu / 2) * (ufl.tr(C) - 3) - mu * ufl.ln(J) + (lmbda / 2) * ufl.ln(J) ** 2
    P = ufl.diff(psi, F)
    scale = fem.Constant(problem.mesh, PETSc.ScalarType(0.0))
    n = ufl.FacetNormal(problem.mesh)
    # Pressure as a follower load: traction -p J F^-T N on the reference boundary.
    residual = ufl.inner(P, ufl.grad(v)) * ufl.dx - _pressure_term(problem, v, n, scale, F)
    Q = scalar_space(problem.mesh, "DG", 0)
    jacobian = fem.Function(Q)
    jacobian_expr = fem.Expression(J, Q.element.interpolation_points())
    iterations = []
    for step in range(1, load_steps + 1):
        check_cancelled(cancelled)
        fraction = step / load_steps
        scale.value = fraction
        bcs = _boundary_conditions(problem, V, fraction)
        nlp = NonlinearProblem(residual, u, bcs)
        solver = NewtonSolver(problem.mesh.comm, nlp)
        solver.rtol, solver.atol, solver.max_it = 1e-9, 1e-10, max_iterations
        solver.convergence_criterion = "incremental"
        solver.error_on_nonconvergence = False
        ksp = solver.krylov_solver
        opts = PETSc.Options()
        prefix = ksp.getOptionsPrefix() or ""
        for key, value in ELASTICITY_KSP.items():
            opts[f"{prefix}{key}"] = value
        ksp.setFromOptions()
        try:
            its, converged = solver.solve(u)
        except RuntimeError as exc:
            raise SolverError(f"neo-Hookean: Newton failed at load step {step}/{load_steps} ({exc})") from exc
        comm = problem.mesh.comm  # every rank must take the same branch (MPI runs)
        finite = comm.allreduce(bool(np.all(np.isfinite(u.x.array))), op=MPI.LAND)
        if not converged or not finite:
            raise SolverError(
                f"neo-Hookean: Newton diverged at load step {step}/{load_steps} "
                f"({its} iterations); try more load steps or a smaller move")
        jacobian.interpolate(jacobian_expr)
        min_j = comm.allreduce(float(np.min(jacobian.x.array)) if jacobian.x.array.size else 1.0, op=MPI.MIN)
        if not min_j > 0:
            raise SolverError(
                f"neo-Hookean: elements inverted at load step {step}/{load_steps} (min det F = {min_j:.3g}); "
                "the prescribed move is not physically admissible")
        iterations.append(int(its))
        progress(fraction, f"Load step {step}/{load_steps}: {its} Newton iterations")
    report = _report(V, t0, solver="newton+cg+gamg", load_steps=load_steps, newton_iterations=iterations)
    return SimulationResult(u, report)
