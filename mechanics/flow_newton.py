"""Damped Newton for the 3D flow solver (``mechanics.flow``): the iteration and the linear solves."""
from __future__ import annotations

from concurrent.futures import CancelledError

import numpy as np

from imaging.errors import SolverError
from mechanics import flow_compat as fc
from mechanics.flow_compat import PETSc, fem


def check_cancel(cancelled) -> None:
    if cancelled is not None and cancelled():
        raise CancelledError("cancelled by user")


def newton(solver, a, tol, max_newton, history, cancelled, report) -> tuple[bool, int]:
    """Damped Newton iterations at convection factor ``a``; (converged, iterations).

    Gives up early (so the caller backs off the convection ramp instead of
    wasting iterations) when the increment stalls or grows well above the best
    one seen at this stage.
    """
    best, damped = np.inf, 0
    for its in range(1, max_newton + 1):
        check_cancel(cancelled)
        step = solver.step()
        history.append({"alpha": a, "increment": step["increment"], "residual": step["residual"],
                        "ksp_its": step["ksp_its"], "damping": step["damping"]})
        report(its, step["increment"])
        inc = step["increment"]
        if not np.isfinite(inc):
            return False, its
        if inc < tol and step["damping"] == 1.0:
            return True, its
        damped = damped + 1 if step["damping"] <= 0.125 else 0
        if (its >= 3 and inc > 10.0 * best) or (its >= 10 and inc > 1e-3) or (its > 4 and inc > 1.0) or damped >= 2:
            return False, its
        best = min(best, inc)
    return False, max_newton


class _LowRankOperator:
    """PETSc python-matrix context: ``y = A x + sum_k c_k b_k (b_k . x)``."""

    def __init__(self, A, terms):
        self.A, self.terms = A, terms

    def mult(self, mat, x, y):
        self.A.mult(x, y)
        for c, b in self.terms:
            y.axpy(c * b.dot(x), b)


class NewtonSolver:
    """Newton steps J dw = -F with a backtracking line search on the residual norm.

    The Newton system is solved with MUMPS or with GMRES + Schur fieldsplit.
    ``low_rank`` holds (c_k, form_k) pairs of rank-one Jacobian terms c_k b_k b_k^T, b_k the
    assembled linear form (rows with Dirichlet conditions zeroed): resistance outlets, whose
    pressure P_v + R_k Q_k(u) is a global functional of the velocity. ``before_residual`` is
    called with the state current before every residual assembly (to set such pressures).
    On the direct path GMRES solves with the full operator, preconditioned by the LU of the
    sparse part, so each rank-one term costs about one GMRES iteration; the iterative path
    leaves them out of the Jacobian (an inexact Newton).
    """

    def __init__(self, W, F, J, Pform, bcs, w, linear, comm, low_rank=(), before_residual=None):
        import dolfinx.fem.petsc  # noqa: F401

        self.before_residual = before_residual or (lambda: None)
        self.F, self.J = fem.form(F), fem.form(J)
        self.P = fem.form(Pform) if linear == "iterative" else None
        self.bcs, self.w = bcs, w
        self.A = fem.petsc.create_matrix(self.J)
        self.Pm = fem.petsc.create_matrix(self.P) if self.P is not None else None
        self.b = fem.petsc.create_vector(self.F)
        self.dx = self.A.createVecRight()
        self.w0 = self.A.createVecRight()
        self.direct = linear != "iterative"
        self.refactor, self.factorizations = True, 0
        self.terms = []
        for c, form in low_rank:
            bk = fem.petsc.assemble_vector(fem.form(form))
            bk.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            fem.petsc.set_bc(bk, bcs, scale=0.0)
            self.terms.append((float(c), bk))
        self.ksp = PETSc.KSP().create(comm)
        if self.terms and self.direct:
            op = PETSc.Mat().createPython(self.A.getSizes(), _LowRankOperator(self.A, self.terms), comm=comm)
            op.setUp()
            self.ksp.setOperators(op, self.A)
        else:
            self.ksp.setOperators(self.A, self.Pm or self.A)
        # The prefix must be set before the fieldsplit sub-solvers exist, or they ignore their options.
        prefix = f"flow{id(self)}_"
        self.ksp.setOptionsPrefix(prefix)
        if linear == "iterative":
            self.ksp.getPC().setType("fieldsplit")
            is_u, is_p = fc.split_is(W)
            self.ksp.getPC().setFieldSplitIS(("u", is_u), ("p", is_p))
            fc.set_options(self.ksp, prefix, fc.ITERATIVE_KSP)
        else:
            fc.set_options(self.ksp, prefix, fc.DIRECT_KSP)
            # A fresh factorization converges in about 1 + (number of rank-one terms) iterations; a kept
            # one that needs many more is not worth its solves: give up early and refactorize.
            self.ksp.setTolerances(max_it=fc.REFACTOR_ITS + len(self.terms) + 5)

    def residual(self) -> float:
        """Assemble the residual at the current state into ``self.b``; its norm."""
        b, w = self.b, self.w
        self.before_residual()
        with b.localForm() as loc:
            loc.set(0.0)
        fem.petsc.assemble_vector(b, self.F)
        fem.petsc.apply_lifting(b, [self.J], bcs=[self.bcs], x0=[w.vector], scale=-1.0)
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        fem.petsc.set_bc(b, self.bcs, w.vector, -1.0)
        return float(b.norm())

    def step(self, max_halvings: int = 4) -> dict:
        A, w = self.A, self.w
        A.zeroEntries()
        fem.petsc.assemble_matrix(A, self.J, bcs=self.bcs)
        A.assemble()
        if self.Pm is not None:
            self.Pm.zeroEntries()
            fem.petsc.assemble_matrix(self.Pm, self.P, bcs=self.bcs)
            self.Pm.assemble()
        r0 = self.residual()
        reused = self.direct and not self.refactor
        reason = self._solve()
        if reason < 0 and reused:  # the kept factorization was too old: renew it and solve again
            self.refactor = True
            reason = self._solve()
            self.refactor = True  # and renew it for the next step too (the Jacobian is still moving)
        if reason < 0:
            raise SolverError(f"linear solver failed (PETSc reason {reason}) after {self.ksp.getIterationNumber()} "
                              "iterations; try linear_solver='direct' on a coarser mesh")
        w.vector.copy(self.w0)
        lam = 1.0
        # Backtracking: accept the first step that lowers the residual. Tiny steps are taken whole
        # (at round-off level the residual norm is noise and cannot decrease reliably).
        tiny = self.dx.norm() < 1e-10 * max(self.w0.norm(), 1e-300)
        for k in range(max_halvings + 1):
            w.vector.waxpy(-lam, self.dx, self.w0)
            w.x.scatter_forward()
            if tiny or k == max_halvings or r0 == 0.0 or self.residual() < (1.0 - 1e-4 * lam) * r0:
                break
            lam *= 0.5
        inc = lam * self.dx.norm() / max(w.vector.norm(), 1e-300)
        return {"increment": float(inc), "residual": r0, "ksp_its": int(self.ksp.getIterationNumber()),
                "damping": lam, "ok": bool(np.isfinite(inc))}

    def _solve(self) -> int:
        """Solve for the Newton update; with MUMPS, reuse the last factorization unless told to renew it."""
        if self.direct:
            self.ksp.getPC().setReusePreconditioner(not self.refactor)
            self.factorizations += int(self.refactor)
        self.ksp.solve(self.b, self.dx)
        if self.direct:
            self.refactor = self.ksp.getIterationNumber() > fc.REFACTOR_ITS + len(self.terms)
        return self.ksp.getConvergedReason()
