"""Run every benchmark and print ratios against baselines measured in the same run."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import importlib

from benchmarks import bench_dicom, bench_mesh

#: The other benchmark modules, run after the DICOM and mesh ones.
MORE = ("benchmarks.bench_tissue", "benchmarks.bench_fusion", "benchmarks.bench_edit", "benchmarks.bench_reduced",
        "benchmarks.bench_sweep", "benchmarks.bench_gui_edit")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("--slices", type=int, default=600, help="slices of the large generated 512x512 series")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", type=Path, help="also write results to this file")
    args = p.parse_args(argv)
    results = [*bench_dicom.run(args.slices, args.repeat), *bench_mesh.run(args.repeat)]
    for name in MORE:
        results.extend(importlib.import_module(name).run(args.repeat))
    print(f"\n{'benchmark':<56} {'ours':>8} {'baseline':>10} {'ratio':>7} {'goal':>6}")
    failed = False
    for r in results:
        goal = r["goal"]
        ok = goal is None or r["ratio"] >= goal
        failed |= not ok
        verdict = "report" if goal is None else ("ok" if ok else "MISSED")
        print(f"{r['name']:<56} {r['ours_s']:>8.3f} {r['baseline_s']:>10.3f} {r['ratio']:>6.2f}x "
              f"{'' if goal is None else '>=' + str(goal):>6} {verdict}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
