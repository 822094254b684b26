"""Plumbing for dolfinx 0.5.2 (Debian): mesh conversion, near-nullspace, solver options.

Version differences from current dolfinx live here, not in the solvers.
"""
from __future__ import annotations

from typing import Any

import numpy as np

try:  # dolfinx comes from Debian's python3-dolfinx-real
    import dolfinx
    from dolfinx import fem
    from mpi4py import MPI
    from petsc4py import PETSc
except ImportError as exc:  # pragma: no cover - setup installs it
    raise ImportError("dolfinx is missing: make setup installs Debian's python3-dolfinx-real") from exc

#: Krylov options for 3D elasticity: LU of P2 on fine meshes needs many GB.
ELASTICITY_KSP = {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1.0e-10, "ksp_max_it": 1000,
                  "pc_gamg_coarse_eq_limit": 1000, "mg_levels_ksp_type": "chebyshev",
                  "mg_levels_pc_type": "jacobi", "mg_levels_esteig_ksp_type": "cg"}


def vector_space(mesh, degree: int):
    """Continuous Lagrange vector space (0.5 API: VectorFunctionSpace)."""
    return fem.VectorFunctionSpace(mesh, ("CG", degree))


def scalar_space(mesh, family: str, degree: int):
    return fem.FunctionSpace(mesh, (family, degree))


def mesh_from_gmsh(model, gdim: int = 3, comm=None) -> tuple[Any, Any, Any]:
    """(mesh, cell_tags, facet_tags) from a gmsh model with physical groups (rank 0)."""
    from dolfinx.io import gmshio

    return gmshio.model_to_mesh(model, comm or MPI.COMM_WORLD, 0, gdim=gdim)


def rigid_body_modes(V) -> PETSc.NullSpace:
    """Six rigid-body modes of a 3D vector space (near-nullspace for GAMG)."""
    index_map = V.dofmap.index_map
    bs = V.dofmap.index_map_bs
    n_local = index_map.size_local
    basis = [np.zeros(n_local * bs, dtype=PETSc.ScalarType) for _ in range(6)]
    x = V.tabulate_dof_coordinates()[:n_local]
    # Blocked dofmap: node k has dofs 3k, 3k+1, 3k+2.
    for i in range(3):
        basis[i][i::3] = 1.0
    basis[3][0::3], basis[3][1::3] = -x[:, 1], x[:, 0]
    basis[4][0::3], basis[4][2::3] = x[:, 2], -x[:, 0]
    basis[5][2::3], basis[5][1::3] = x[:, 1], -x[:, 2]
    vecs = []
    for b in basis:
        v = dolfinx.la.create_petsc_vector(index_map, bs)
        v.array[:] = b
        vecs.append(v)
    dolfinx.la.orthonormalize(vecs)
    return PETSc.NullSpace().create(vectors=vecs)


def boundary_dofs(V, facet_tags, tag: int) -> np.ndarray:
    """Dofs of V on the facets carrying ``tag``."""
    mesh = V.mesh
    facets = facet_tags.find(tag)
    return fem.locate_dofs_topological(V, mesh.topology.dim - 1, facets)


def comm_world():
    return MPI.COMM_WORLD
