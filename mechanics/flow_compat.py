"""dolfinx 0.5.2 plumbing for the flow solver: meshes, boundary data, gathers, solver options.

Kept apart from ``mechanics.flow`` so the solver reads like the maths.
"""
from __future__ import annotations

import numpy as np

from mechanics.fem_compat import fem, MPI, PETSc  # noqa: F401  (re-exported)

#: Newton step by GMRES preconditioned with a MUMPS LU factorization of a (possibly older)
#: Jacobian: a fresh factorization solves in about 1 + (resistance outlets) iterations; the flow
#: solver keeps a factorization while GMRES converges quickly with it (it changes little between
#: Newton steps) and refactorizes when it does not (its iteration cap is set by
#: ``flow_newton.NewtonSolver`` from ``REFACTOR_ITS``). METIS ordering (icntl 7 = 5).
DIRECT_KSP = {"ksp_type": "gmres", "ksp_pc_side": "right", "ksp_gmres_restart": 60, "ksp_rtol": 1e-9, "ksp_atol": 1e-30,
              "pc_type": "lu", "pc_factor_mat_solver_type": "mumps",
              "mat_mumps_icntl_14": 200, "mat_mumps_icntl_7": 5}
#: GMRES iterations above which the kept factorization is renewed before the next step.
REFACTOR_ITS = 20
#: Large problems: GMRES + Schur-complement fieldsplit, AMG on the velocity block and the
#: viscosity-scaled pressure mass matrix for the Schur complement (Elman, Silvester & Wathen 2014).
ITERATIVE_KSP = {"ksp_type": "fgmres", "ksp_gmres_restart": 300, "ksp_rtol": 1e-8, "ksp_atol": 1e-14,
                 "ksp_max_it": 3000, "pc_type": "fieldsplit", "pc_fieldsplit_type": "schur",
                 "pc_fieldsplit_schur_fact_type": "upper", "pc_fieldsplit_schur_precondition": "a11",
                 "fieldsplit_u_ksp_type": "preonly", "fieldsplit_u_pc_type": "hypre",
                 "fieldsplit_u_pc_hypre_type": "boomeramg",
                 "fieldsplit_u_pc_hypre_boomeramg_strong_threshold": 0.5,
                 "fieldsplit_u_pc_hypre_boomeramg_coarsen_type": "HMIS",
                 "fieldsplit_u_pc_hypre_boomeramg_interp_type": "ext+i",
                 "fieldsplit_p_ksp_type": "preonly", "fieldsplit_p_pc_type": "jacobi"}
#: "auto" uses the direct path up to this size. The fieldsplit path converges for slow (Stokes-like)
#: flow, but at hyperaemic coronary Reynolds numbers (~500) on Galerkin P2/P1 neither the
#: pressure-mass Schur approximation nor AMG on the convective velocity block converged
#: (measured, see docs/ffr-verification.md), so it is not the default for any size.
DIRECT_MAX_DOFS = 2_000_000


def lumen_to_dolfinx(lumen, comm=None, scale: float = 1e-3):
    """(mesh, facet_tags) from an ``imaging.lumen_mesh.LumenMesh``; mm -> m by ``scale``.

    Only rank 0 needs the arrays; other ranks may pass ``None``.
    """
    from dolfinx import cpp
    from dolfinx.io.gmshio import cell_perm_array, ufl_mesh
    from dolfinx.mesh import CellType, create_mesh, meshtags_from_entities

    comm = comm or MPI.COMM_WORLD
    if comm.rank == 0:
        nodes = lumen.cells.shape[1]
        fnodes = lumen.facets.shape[1]
        cells = lumen.cells[:, cell_perm_array(CellType.tetrahedron, nodes)].astype(np.int64)
        x = np.ascontiguousarray(lumen.points * scale)
        facets = lumen.facets[:, cell_perm_array(CellType.triangle, fnodes)].astype(np.int64)
        values = lumen.facet_tags.astype(np.int32)
    nodes, fnodes = comm.bcast((nodes, fnodes) if comm.rank == 0 else None, root=0)
    if comm.rank != 0:
        cells, x = np.empty((0, nodes), np.int64), np.empty((0, 3))
        facets, values = np.empty((0, fnodes), np.int64), np.empty(0, np.int32)
    domain = ufl_mesh(4 if nodes == 4 else 11, 3)
    mesh = create_mesh(comm, cells, x, domain)
    mesh.topology.create_connectivity(2, 3)
    ent, val = cpp.io.distribute_entity_data(mesh._mesh, 2, facets, values)
    tags = meshtags_from_entities(mesh, 2, cpp.graph.AdjacencyList_int32(ent), val.astype(np.int32))
    return mesh, tags


def facet_midpoints(mesh, facets: np.ndarray) -> np.ndarray:
    from dolfinx.mesh import compute_midpoints

    return compute_midpoints(mesh, 2, facets)


def split_is(W) -> tuple:
    """PETSc index sets (global, owned) of the velocity and pressure dofs of a mixed space."""
    imap = W.dofmap.index_map
    n_owned = imap.size_local * W.dofmap.index_map_bs
    start = imap.local_range[0] * W.dofmap.index_map_bs
    out = []
    for i in range(2):
        _, dofs = W.sub(i).collapse()
        dofs = np.asarray(dofs, dtype=np.int32)
        dofs = dofs[dofs < n_owned] + start
        out.append(PETSc.IS().createGeneral(np.sort(dofs).astype(np.int32), comm=W.mesh.comm))
    return tuple(out)


def gather_nodal(V, values: np.ndarray, comm) -> tuple:
    """(coordinates, values) of the owned dofs of a P1 space, gathered on rank 0 (else None)."""
    n = V.dofmap.index_map.size_local
    x = V.tabulate_dof_coordinates()[:n]
    bs = V.dofmap.index_map_bs
    v = np.asarray(values).reshape(-1, bs)[:n]
    allx = comm.gather(x, root=0)
    allv = comm.gather(v, root=0)
    if comm.rank != 0:
        return None, None
    return np.vstack(allx), np.vstack(allv)


def to_points(target_mm: np.ndarray, coords_m: np.ndarray, values: np.ndarray, scale: float = 1e-3) -> np.ndarray:
    """Values at given points (mm) from gathered nodal data (m), matched by nearest node."""
    from scipy.spatial import cKDTree

    idx = cKDTree(coords_m / scale).query(target_mm)[1]
    return values[idx]


def peak_memory_mb() -> float:
    """Peak resident memory of this process, MB."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def set_options(ksp, prefix: str, opts: dict) -> None:
    o = PETSc.Options()
    ksp.setOptionsPrefix(prefix)
    for k, v in opts.items():
        o[prefix + k] = v
    ksp.setFromOptions()
