"""Run every benchmark and print ratios against baselines measured in the same run."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import bench_dicom, bench_mesh


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("--slices", type=int, default=300, help="slices of the generated 512x512 series")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", type=Path, help="also write results to this file")
    args = p.parse_args(argv)
    results = [bench_dicom.run(args.slices, args.repeat), *bench_mesh.run(args.repeat)]
    print(f"\n{'benchmark':<44} {'ours s':>8} {'baseline s':>10} {'ratio':>7} {'goal':>6}")
    failed = False
    for r in results:
        ok = r["ratio"] >= r["goal"]
        failed |= not ok
        print(f"{r['name']:<44} {r['ours_s']:>8.3f} {r['baseline_s']:>10.3f} {r['ratio']:>6.2f}x "
              f"{'>=' + str(r['goal']):>6} {'ok' if ok else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
