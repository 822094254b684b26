"""Instant what-if: rigid moves of a bone segment by superposing unit responses.

Linear elasticity is linear in the boundary motion. A rigid move
x -> R (x - c) + c + t displaces the segment interface by
d(x) = (R - I)(x - c) + t, an affine function of x. With the 12 unit
responses U_ij (interface moved by e_i (x - c)_j) and U_i (by e_i), the
response to any move, finite rotations included, is
u = sum_ij (R - I)_ij U_ij + sum_i t_i U_i: exact, and a dot product.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import ufl
from dolfinx import fem
from dolfinx.fem.petsc import apply_lifting, assemble_matrix, assemble_vector, set_bc
from petsc4py import PETSc
from scipy.spatial.transform import Rotation

from imaging.errors import InputError, SolverError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress
from mechanics.fem_compat import boundary_dofs, rigid_body_modes, vector_space
from mechanics.tissue import Material

#: Tight tolerance: superposed answers must match a direct solve to ~1e-8.
WHATIF_KSP = {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1.0e-12, "ksp_max_it": 2000}


@dataclass
class RigidMove:
    """Translation (mm) and rotation (deg, extrinsic x, y, z) about a centre (LPS mm)."""

    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def parse(cls, text: str) -> "RigidMove":
        """From "tx,ty,tz,rx,ry,rz" (mm, deg)."""
        try:
            v = [float(s) for s in text.split(",")]
        except ValueError as exc:
            raise InputError(f"--move {text!r}: expected six numbers tx,ty,tz,rx,ry,rz") from exc
        if len(v) != 6:
            raise InputError(f"--move {text!r}: expected six numbers tx,ty,tz,rx,ry,rz")
        return cls(tuple(v[:3]), tuple(v[3:]))

    def matrix(self) -> np.ndarray:
        return Rotation.from_euler("xyz", self.rotation_deg, degrees=True).as_matrix()

    def displacement(self, points: np.ndarray, center: np.ndarray) -> np.ndarray:
        """d(x) = (R - I)(x - c) + t at points (n, 3)."""
        A = self.matrix() - np.eye(3)
        return (np.asarray(points) - center) @ A.T + np.asarray(self.translation_mm)


class UnitResponses:
    """The 12 affine unit responses of one moved segment (others and cut faces fixed)."""

    def __init__(self, mesh, facet_tags, material: Material, moved_tag: int, fixed_tags: list[int],
                 center_mm: np.ndarray, degree: int = 1) -> None:
        self.V = vector_space(mesh, degree)
        self.center = np.asarray(center_mm, float)
        self.material = material
        self.moved_dofs = boundary_dofs(self.V, facet_tags, moved_tag)
        if len(self.moved_dofs) == 0:
            raise InputError("the moved segment touches no soft tissue (no interface faces)")
        fixed = [boundary_dofs(self.V, facet_tags, t) for t in fixed_tags]
        self.fixed_dofs = np.unique(np.concatenate(fixed)) if fixed else np.zeros(0, dtype=np.int32)
        self.fields: Optional[np.ndarray] = None  # (12, ndofs)
        self.report: dict = {}

    def __getstate__(self) -> dict:
        # Pickled (e.g. from a worker process) without the dolfinx space: superposition needs only arrays.
        state = dict(self.__dict__)
        state["V"] = None
        return state

    def _space(self):
        if self.V is None:
            raise InputError("these unit responses were computed in another process: superpose works, "
                             "direct solves need the UnitResponses that computed them")
        return self.V

    def _forms(self):
        mu, lmbda = self.material.mu, self.material.lmbda
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        eps = ufl.sym(ufl.grad(u))
        sigma = 2.0 * mu * eps + lmbda * ufl.tr(eps) * ufl.Identity(3)
        a = fem.form(ufl.inner(sigma, ufl.grad(v)) * ufl.dx)
        zero = fem.Constant(self.V.mesh, PETSc.ScalarType((0.0, 0.0, 0.0)))
        L = fem.form(ufl.dot(zero, v) * ufl.dx)
        return a, L

    def _bcs(self, moved_values: fem.Function) -> list:
        # Later conditions win at shared nodes: the moved bone over fixed/cut faces.
        bcs = []
        if len(self.fixed_dofs):
            bcs.append(fem.dirichletbc(fem.Function(self.V), self.fixed_dofs))
        bcs.append(fem.dirichletbc(moved_values, self.moved_dofs))
        return bcs

    def solve_boundary(self, values: np.ndarray, ksp=None, forms=None) -> np.ndarray:
        """Solve with the moved interface displaced by ``values`` (per-dof array over V)."""
        self._space()
        a, L = forms or self._forms()
        g = fem.Function(self.V)
        g.x.array[:] = values
        bcs = self._bcs(g)
        own_ksp = ksp is None
        if own_ksp:
            ksp = self._ksp(a, bcs)
        b = assemble_vector(L)
        apply_lifting(b, [a], [bcs])
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        set_bc(b, bcs)
        x = b.duplicate()
        ksp.solve(b, x)
        if ksp.getConvergedReason() <= 0:
            raise SolverError(f"unit response: CG did not converge (PETSc reason {ksp.getConvergedReason()})")
        self._last_iterations = ksp.getIterationNumber()
        out = x.array.copy()
        if own_ksp:
            ksp.destroy()
        return out

    def _ksp(self, a, bcs):
        A = assemble_matrix(a, bcs=bcs)
        A.assemble()
        A.setNearNullSpace(rigid_body_modes(self.V))
        ksp = PETSc.KSP().create(self.V.mesh.comm)
        ksp.setOperators(A)
        opts = PETSc.Options()
        prefix = f"whatif_{id(self)}_"
        ksp.setOptionsPrefix(prefix)
        for k, v in WHATIF_KSP.items():
            opts[prefix + k] = v
        ksp.setFromOptions()
        return ksp

    def basis_values(self, k: int) -> np.ndarray:
        """Unit boundary field k over all dofs of V: e_i (x - c)_j for j < 3, e_i for j = 3 (k = 4i + j)."""
        x = self.V.tabulate_dof_coordinates()
        field = np.zeros((len(x), 3))
        i, j = divmod(k, 4)
        field[:, i] = 1.0 if j == 3 else x[:, j] - self.center[j]
        return field.reshape(-1)

    def compute(self, progress: Optional[ProgressFn] = None, cancelled: Optional[CancelledFn] = None) -> None:
        """Solve the 12 unit problems (one matrix, one preconditioner setup)."""
        progress = progress or no_progress
        t0 = time.perf_counter()
        forms = self._forms()
        a, _L = forms
        ksp = self._ksp(a, self._bcs(fem.Function(self.V)))
        fields, iterations = [], []
        for k in range(12):
            check_cancelled(cancelled)
            fields.append(self.solve_boundary(self.basis_values(k), ksp, forms))
            iterations.append(int(self._last_iterations))
            progress((k + 1) / 12, f"Unit response {k + 1}/12")
        ksp.destroy()
        self.fields = np.array(fields)
        self.report = {"dofs": int(self.fields.shape[1]), "unit_solves": 12, "iterations": iterations,
                       "seconds": round(time.perf_counter() - t0, 3)}

    def coefficients(self, move: RigidMove) -> np.ndarray:
        """Weights of the 12 unit fields for a rigid move about the segment centre."""
        A = move.matrix() - np.eye(3)
        w = np.zeros(12)
        for i in range(3):
            w[4 * i: 4 * i + 3] = A[i]
            w[4 * i + 3] = move.translation_mm[i]
        return w

    def superpose(self, move: RigidMove) -> np.ndarray:
        """Displacement (all dofs, flat) for a rigid move: a 12-term dot product."""
        if self.fields is None:
            raise InputError("unit responses not computed yet")
        return self.coefficients(move) @ self.fields

    def solve_move(self, move: RigidMove) -> np.ndarray:
        """Direct solve for one move (the reference the superposition must equal)."""
        x = self._space().tabulate_dof_coordinates()
        return self.solve_boundary(move.displacement(x, self.center).reshape(-1))
