"""`twinplan scenario ...` and `twinplan sweep ...` on the Cranium case: the CLI and JSON contracts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from app.project import load_case, save_case
from tests.app.scenario_case import COARSE_MM, cranium_case

ROOT = Path(__file__).resolve().parents[2]


def _run(capsys, *argv) -> tuple[int, dict, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    data = json.loads(out.out) if "--json" in argv and code == 0 else {}
    return code, data, out.err


@pytest.mark.fem
@pytest.mark.slow
def test_scenario_cli_on_cranium(tmp_path, capsys):
    case = cranium_case()
    case.volumes = {}  # the labels are all a tissue scenario reads; each CLI call then loads/saves less
    path = save_case(case, tmp_path / "cranium")
    code, a, _ = _run(capsys, "scenario", path, "add", "advance 5", "--segment", "maxilla", "--move", "0,-5,0,0,0,0",
                      "--fixed", "bone", "--set", f"voxel_mm={COARSE_MM}", "--json")
    assert code == 0 and a["params"]["move"] == [0, -5, 0, 0, 0, 0] and a["params"]["fixed"] == ["bone"]
    code, b, _ = _run(capsys, "scenario", path, "branch", "advance 5", "advance 5 yaw", "--set",
                      "move=[0,-5,0,0,0,5]", "--json")
    assert code == 0 and b["parent"] == "advance 5" and b["params"]["voxel_mm"] == COARSE_MM

    code, ran, _ = _run(capsys, "scenario", path, "run", "--all", "--json")
    assert code == 0 and set(ran["scenarios"]) == {"advance 5", "advance 5 yaw"}
    s = ran["scenarios"]["advance 5"]
    assert 0.5 < s["summary"]["max_skin_displacement_mm"] <= 5.0 + 1e-6 and s["solver"]["dofs"] > 5000

    code, table, _ = _run(capsys, "scenario", path, "compare", "advance 5", "advance 5 yaw", "--json")
    assert code == 0 and table["scenarios"] == ["advance 5", "advance 5 yaw"]
    row = table["outcomes"]["max_skin_displacement_mm"]
    assert row["advance 5 yaw"] > row["advance 5"] and table["not_run"] == []
    code, _, _ = _run(capsys, "scenario", path, "compare", "advance 5", "advance 5 yaw")
    assert code == 0

    code, sweep, _ = _run(capsys, "sweep", path, "--scenario", "advance 5", "--samples", 2, "--seed", 7,
                          "--workers", 0, "--json")
    assert code == 0 and sweep["seed"] == 7 and sweep["n_samples"] == 2 and len(sweep["samples"]) == 2
    band = sweep["bands"]["pronasale_displacement_mm"]
    assert 0.0 < band["p5"] <= band["p50"] <= band["p95"] < 5.0
    assert sweep["probability_ffr_below_0_80"] == {}
    saved = load_case(path)
    assert saved.scenarios["advance 5"].results["sweep"]["bands"] == sweep["bands"]
    assert saved.scenarios["advance 5"].surfaces["skin"].n_points > 1000

    code, renamed, _ = _run(capsys, "scenario", path, "rename", "advance 5", "plan A", "--json")
    assert code == 0 and renamed == {"renamed": "advance 5", "to": "plan A"}
    # The console script, as users call it (a subprocess): list after the rename.
    proc = subprocess.run([sys.executable, "-m", "app.cli", "scenario", str(path), "list", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["scenarios"]
    assert [r["name"] for r in rows] == ["plan A", "advance 5 yaw"] and rows[1]["parent"] == "plan A"
    assert rows[0]["swept"] and rows[0]["summary"] == s["summary"]
    code, gone, _ = _run(capsys, "scenario", path, "delete", "plan A", "--json")
    assert code == 0 and gone["reparented"] == ["advance 5 yaw"]

    # Bad input: exit 2, one line naming the parameter.
    for argv, message in ((("scenario", path, "add", "advance 5 yaw", "--segment", "maxilla"), "already used"),
                          (("scenario", path, "add", "x", "--segment", "maxilla", "--move", "1,2"), "six"),
                          (("scenario", path, "add", "x", "--set", "voxel"), "KEY=VALUE"),
                          (("scenario", path, "run", "nope"), "no such scenario"),
                          (("sweep", path, "--scenario", "advance 5 yaw", "--samples", 2, "--scheduler", "host:1"),
                           "--scheduler"),
                          (("sweep", path, "--scenario", "advance 5 yaw", "--range", "poisson_ratio=0.4"), "--range")):
        code, _, err = _run(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, err
