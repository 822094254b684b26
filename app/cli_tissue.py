"""`twinplan tissue`: soft-tissue prediction for a planned bone move (no Qt)."""
from __future__ import annotations

from app.cli import TerminalProgress, emit


def cmd_tissue(args) -> int:
    from app.pipeline import apply_result
    from app.plan import TissuePlan, run_tissue_plan
    from app.project import load_case, save_case
    from mechanics.whatif import RigidMove

    case = load_case(args.case)
    fixed = [n for n in (args.fixed.split(",") if args.fixed else []) if n]
    plan = TissuePlan(args.segment, RigidMove.parse(args.move), fixed=fixed, skin=args.skin, model=args.model,
                      voxel_mm=args.voxel_mm, poisson_ratio=args.poisson)
    # Under ``mpirun -n N`` every rank runs this: the solve is distributed, the result is
    # gathered on every rank, and only rank 0 draws progress, saves the case and prints.
    root = _mpi_rank() == 0
    bar = TerminalProgress() if root else None
    result = run_tissue_plan(case, plan, progress=bar)
    if not root:
        return 0
    bar.done()
    apply_result(case, result)
    save_case(case, args.case)
    r = result.report
    data = {"max_skin_displacement_mm": r["max_skin_displacement_mm"], "landmarks": r["landmarks"],
            "dofs": r["dofs"], "seconds": r["seconds"], "model": args.model, "surface": result.name, "mpi_ranks": r["mpi_ranks"],
            "solver": {k: r[k] for k in ("solver", "iterations", "residual", "newton_iterations", "load_steps")
                       if k in r}, "mesh": r["mesh"]}
    lines = [f"{args.model}: max skin displacement {r['max_skin_displacement_mm']:.2f} mm "
             f"({r['dofs']} dofs, {r['seconds']:.1f} s); saved surface {result.name}"]
    lines += [f"    {k}: {v['displacement_norm_mm']:.2f} mm" for k, v in r["landmarks"].items()]
    emit(data, args.json, lines)
    return 0


def _mpi_rank() -> int:
    """This process's rank in ``MPI.COMM_WORLD`` (0 when not run under mpirun)."""
    from mpi4py import MPI

    return MPI.COMM_WORLD.rank


def register(sub) -> None:
    s = sub.add_parser("tissue", help="predict the skin after moving a bone segment (finite elements)")
    s.add_argument("case")
    s.add_argument("--segment", required=True, help="label of the moved bone segment")
    s.add_argument("--move", required=True, help='"tx,ty,tz,rx,ry,rz": mm and degrees, LPS, about the segment centre')
    s.add_argument("--model", choices=("linear", "neohookean"), default="linear")
    s.add_argument("--fixed", default="", help="comma-separated labels of unmoved bone (fixed)")
    s.add_argument("--skin", default="skin", help="label of everything inside the skin (made if absent)")
    s.add_argument("--voxel-mm", type=float, default=4.0, help="element size (default 4 mm)")
    s.add_argument("--poisson", type=float, default=0.45, help="Poisson's ratio (default 0.45)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_tissue)
