"""1D vs 3D FFR on the straight cosine-stenosed tube: the table in the README (issue 7).

Run: ``python -m benchmarks.study_ffr_1d_vs_3d [--out results.json]`` (about 30-60 min on
2 cores). For every severity it solves 3D Navier-Stokes on a quarter model
(``imaging.lumen_shapes.mesh_stenosed_tube``, radius 1.5 mm, length 30 mm, lesion
8 mm, hyperaemic Murray-law outlet, 93 mmHg inlet) and the 1D model with both
stenosis-loss models; ``--refine`` adds a mesh-refinement row set at one severity.
Rows are printed as they finish (JSON lines) and as a Markdown table at the end.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RADIUS_MM, LENGTH_MM, LESION_MM = 1.5, 30.0, 8.0


def one_d(severity: float) -> dict:
    from mechanics.reduced import STENOSIS_MODELS, solve_ffr_1d, stenosed_tube_tree

    tree = stenosed_tube_tree(LENGTH_MM, RADIUS_MM, severity, LESION_MM)
    return {m: float(solve_ffr_1d(tree, stenosis_model=m, min_stenosis=0.1).per_outlet["outlet_1"])
            for m in STENOSIS_MODELS}


def three_d(severity: float, radius_fraction: float) -> dict:
    from imaging.lumen_shapes import mesh_stenosed_tube
    from mechanics.flow import solve_flow

    mesh = mesh_stenosed_tube(RADIUS_MM, LENGTH_MM, severity, LESION_MM, quarter=True,
                              radius_fraction=radius_fraction, wall_fraction=0.6)
    t0 = time.perf_counter()
    res = solve_flow(mesh)
    rep = res.report
    return {"ffr_3d": res.ffr_min, "tets": mesh.n_tets, "dofs": res.dofs, "seconds": time.perf_counter() - t0,
            "newton": rep["newton_iterations"], "factorizations": rep["factorizations"],
            "reynolds_inlet": rep["reynolds_inlet"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.study_ffr_1d_vs_3d")
    p.add_argument("--severities", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.55, 0.6])
    p.add_argument("--radius-fraction", type=float, default=0.3)
    p.add_argument("--refine", type=float, nargs="*", default=[], help="extra radius fractions at --refine-at")
    p.add_argument("--refine-at", type=float, default=0.5)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    rows = []
    runs = [(s, args.radius_fraction) for s in args.severities] + [(args.refine_at, rf) for rf in args.refine]
    for sev, rf in runs:
        row = {"severity": sev, "radius_fraction": rf, **one_d(sev)}
        try:
            row.update(three_d(sev, rf))
        except Exception as exc:  # report the failure in the table, go on with the next row
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1))
    print("\n| diameter stenosis | 3D FFR | 1D Young-Tsai | 1D Poiseuille+expansion | tets | DOFs | 3D s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        f3 = f"{r['ffr_3d']:.3f}" if "ffr_3d" in r else "failed"
        print(f"| {r['severity']:.0%} (h={r['radius_fraction']}r) | {f3} | {r['young-tsai']:.3f} | "
              f"{r['poiseuille+expansion']:.3f} | {r.get('tets', '')} | {r.get('dofs', '')} | "
              f"{r.get('seconds', float('nan')):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
