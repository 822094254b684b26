"""1D FFR: per-update time of the live what-if (new lesion severity -> FFR) on the real coronary tree.

Baseline in the same run: the 0.1 s "instant" budget of issue 7 and the centerline extraction that a
3D re-run would at least need. Goal: one update (stent or lesion change + solve) well under 0.1 s.
"""
from __future__ import annotations

from pathlib import Path

from benchmarks.timing import best_time

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dfemtoolz" / "coronary"


def run(repeat: int = 3) -> list[dict]:
    if not (DATA / "m1_fluid.stl").is_file():
        return []
    from imaging.centerline import extract_centerlines
    from imaging.lesions import apply_stent, detect_lesions, introduce_lesion
    from imaging.vessels import load_lumen
    from mechanics.reduced import solve_ffr_1d

    lumen = load_lumen(DATA / "m1_fluid.stl", caps=[DATA / f"BC{i}.stl" for i in range(7)])
    extract_s = best_time(lambda: extract_centerlines(lumen), 1)
    tree = extract_centerlines(lumen)
    lesions = detect_lesions(tree)
    n_points = sum(len(b.points) for b in tree.branches)

    def solve_only():
        solve_ffr_1d(tree, lesions=lesions)

    def what_if():  # drag the severity of a scenario lesion, stent the real one, re-grade, solve
        for sev in (0.3, 0.5, 0.7):
            t = apply_stent(introduce_lesion(tree, 5, 25.0, sev, 8.0), lesions[0])
            solve_ffr_1d(t)

    solve = best_time(solve_only, max(5, repeat))
    update = best_time(what_if, repeat) / 3
    return [
        {"name": f"1D FFR solve ({len(tree.branches)} branches, {n_points} points) vs 0.1 s",
         "ours_s": solve, "baseline_s": 0.1, "ratio": 0.1 / solve, "goal": 5.0},
        {"name": "1D what-if update (lesion + stent + detect + solve) vs 0.1 s",
         "ours_s": update, "baseline_s": 0.1, "ratio": 0.1 / update, "goal": 1.0},
        {"name": "1D what-if update vs centerline extraction", "ours_s": update, "baseline_s": extract_s,
         "ratio": extract_s / update, "goal": None},
    ]
