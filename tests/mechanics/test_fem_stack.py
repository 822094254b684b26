"""The FE stack works: a tiny dolfinx 0.5 linear-elasticity solve with an exact answer.

Uniaxial tension of a block: with the exact displacement u = (s/E x, -nu s/E y,
-nu s/E z) on the whole boundary and no body force, the P1 solution is exact
(the field is linear), so the error is round-off plus the solver tolerance.
"""
from __future__ import annotations

import numpy as np
import pytest

dolfinx = pytest.importorskip("dolfinx", reason="Debian python3-dolfinx-real is installed by make setup")

pytestmark = pytest.mark.fem


def test_uniaxial_tension_block_is_exact():
    import ufl
    from dolfinx import fem, mesh
    from dolfinx.fem.petsc import LinearProblem
    from mpi4py import MPI
    from petsc4py import PETSc

    E, nu, s = 3000.0, 0.45, 30.0  # Pa, -, Pa (soft tissue order of magnitude)
    lam = E * nu / ((1 + nu) * (1 - 2 * nu))
    mu = E / (2 * (1 + nu))
    domain = mesh.create_box(MPI.COMM_WORLD, [np.zeros(3), np.array([2.0, 1.0, 1.0])], [6, 3, 3],
                             mesh.CellType.tetrahedron)
    V = fem.VectorFunctionSpace(domain, ("CG", 1))

    def exact(x):
        return np.vstack([s / E * x[0], -nu * s / E * x[1], -nu * s / E * x[2]])

    u_bc = fem.Function(V)
    u_bc.interpolate(exact)
    domain.topology.create_connectivity(domain.topology.dim - 1, domain.topology.dim)
    facets = mesh.exterior_facet_indices(domain.topology)
    dofs = fem.locate_dofs_topological(V, domain.topology.dim - 1, facets)
    bc = fem.dirichletbc(u_bc, dofs)

    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)

    def sigma(w):
        eps = ufl.sym(ufl.grad(w))
        return 2 * mu * eps + lam * ufl.tr(eps) * ufl.Identity(3)

    a = ufl.inner(sigma(u), ufl.grad(v)) * ufl.dx
    L = ufl.dot(fem.Constant(domain, PETSc.ScalarType((0.0, 0.0, 0.0))), v) * ufl.dx
    problem = LinearProblem(a, L, bcs=[bc], petsc_options={"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-12})
    uh = problem.solve()
    assert problem.solver.getConvergedReason() > 0

    ref = fem.Function(V)
    ref.interpolate(exact)
    err = np.max(np.abs(uh.x.array - ref.x.array))
    # Tolerance: rtol 1e-12 on a 448-DOF system; displacements are ~0.02.
    assert err < 1e-9, err
    # The stress in x equals the applied s (checked at the cell level).
    Q = fem.FunctionSpace(domain, ("DG", 0))
    sxx = fem.Function(Q)
    sxx.interpolate(fem.Expression(sigma(uh)[0, 0], Q.element.interpolation_points()))
    assert np.allclose(sxx.x.array, s, rtol=1e-8)
