"""`twinplan edit` as a user runs it (subprocess) on a case cut from the demo head CT."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imaging.volume import Volume

ROOT = Path(__file__).resolve().parents[2]
TWINPLAN = [sys.executable, "-m", "app.cli"]
SEED = "63.16 -121.54 70.5"  # temporal bone (1425 HU), inside the cropped scan (checked below)


def run(*args, check=True):
    proc = subprocess.run([*TWINPLAN, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def edit(case, *args) -> dict:
    return json.loads(run("edit", case, *args, "--json").stdout)


@pytest.fixture(scope="module")
def case_path(demo_case_path, tmp_path_factory):
    """Slices 0-59 of Cranium (upper teeth to mid vault) with a thresholded bone label."""
    from app.case import Case, Provenance
    from app.project import save_case
    from imaging.invesalius import load_invesalius_project
    from imaging.segment import segment_threshold

    full = load_invesalius_project(demo_case_path, load_surfaces=False).volume
    ct = Volume(full.array[:60].copy(), full.geometry, modality="CT")
    assert ct.value_at_lps([float(v) for v in SEED.split()]) > 600
    case = Case("cranium_crop")
    case.set_item("volume", "ct", ct, Provenance("test_crop", {"slices": [0, 60]}))
    bone = segment_threshold(ct, (226, 3071), name="bone")
    case.set_item("label", "bone", bone, Provenance("segment_threshold", {}, [case.input_ref("volume", "ct")]))
    return save_case(case, tmp_path_factory.mktemp("edit") / "crop.twin")


def test_grow_combine_split_chain(case_path):
    from app.project import load_case

    bone = load_case(case_path).labels["bone"].voxel_count()
    grown = edit(case_path, "--label", "bone", "--op", "grow", "--seed", *SEED.split(), "--preset", "bone",
                 "--out-label", "grown")
    assert set(grown) >= {"label", "voxels", "volume_mm3", "changed_voxels", "seconds", "seed_hu"}
    assert grown["label"] == "grown" and grown["changed_voxels"] == grown["voxels"]
    assert 0.99 * bone < grown["voxels"] <= bone  # bone = the same component plus filled cavities
    assert grown["volume_mm3"] == pytest.approx(grown["voxels"] * 0.9570312 ** 2 * 1.5, rel=1e-6)

    diff = edit(case_path, "--label", "bone", "--op", "combine", "--with", "grown", "--logic", "subtract",
                "--out-label", "cavities")
    assert diff["voxels"] == bone - grown["voxels"]

    split = edit(case_path, "--label", "bone", "--op", "split", "--plane-point", 0, 0, 18.75,
                 "--plane-normal", 0, 0, 1, "--kerf-mm", 3, "--out-labels", "cranium", "maxilla")
    parts = {p["label"]: p["voxels"] for p in split["parts"]}
    assert set(parts) == {"cranium", "maxilla"} and min(parts.values()) > 1000
    assert sum(parts.values()) + split["kerf_voxels"] == split["voxels"] == bone

    case = load_case(case_path)
    assert {"grown", "cavities", "cranium", "maxilla"} <= set(case.labels)
    prov = case.provenance["label/grown"]
    assert prov.operation == "edit_grow" and prov.inputs[0]["id"] == "volume/ct"
    assert case.provenance["label/maxilla"].inputs[0]["id"] == "label/bone"
    upper, lower = case.labels["cranium"].array, case.labels["maxilla"].array
    assert not upper[:14].any() and not lower[12:].any()


def test_paint_erase_morph_islands_scissors(case_path):
    paint = edit(case_path, "--label", "marker", "--op", "paint", "--center", 120, -80, 30,
                 "--center", 130, -80, 30, "--radius-mm", 5)
    # Two overlapping 5 mm balls 10 mm apart: 2 x 523.6 mm3 minus nothing (they touch).
    assert paint["strokes"] == 2 and paint["volume_mm3"] == pytest.approx(2 * 4 / 3 * np.pi * 125, rel=0.05)
    erase = edit(case_path, "--label", "marker", "--op", "erase", "--center", 120, -80, 30, "--radius-mm", 6)
    assert erase["voxels"] == pytest.approx(paint["voxels"] / 2, rel=0.05)
    assert erase["changed_voxels"] == paint["voxels"] - erase["voxels"]

    closed = edit(case_path, "--label", "bone", "--op", "morph", "--morph", "close", "--radius-mm", 2,
                  "--out-label", "bone_closed")
    # Closing only adds (sinus walls, pores, sutures): measured +7.0 % on this
    # lower half of the skull (+4.5 % on the whole one).
    assert 0 < closed["changed_voxels"] < 0.1 * closed["voxels"]

    islands = edit(case_path, "--label", "bone_closed", "--op", "islands", "--islands", "largest")
    assert islands["islands_after"] == 1 and islands["islands_before"] >= 1

    cut = edit(case_path, "--label", "bone_closed", "--op", "scissors", "--view", "axial",
               "--polygon", -10, -250, 0, 300, -250, 0, 300, -120, 0, -10, -120, 0)
    # The rectangle covers everything anterior of P = -120 mm (the face), through all slices.
    from app.project import load_case

    lab = load_case(case_path).labels["bone_closed"]
    j_cut = (-120 - lab.geometry.origin_xyz[1]) / lab.geometry.spacing_xyz[1]
    assert cut["changed_voxels"] > 10000
    assert not lab.array[:, :int(np.floor(j_cut)) + 1].any() and lab.array[:, int(np.ceil(j_cut)):].any()

    filled = edit(case_path, "--label", "bone", "--op", "fill", "--fill-view", "axial", "--out-label", "bone_fill")
    assert filled["voxels"] > closed["voxels"] - closed["changed_voxels"]


@pytest.mark.parametrize("args, needle", [
    (("--label", "bone", "--op", "grow", "--preset", "bone"), "--seed"),
    (("--label", "nothing", "--op", "morph", "--morph", "close", "--radius-mm", 1), "--label nothing"),
    (("--label", "bone", "--op", "grow", "--seed", 0, 0, 9999, "--preset", "bone"), "--seed"),
    (("--label", "bone", "--op", "combine", "--with", "nothing"), "--with nothing"),
    (("--label", "bone", "--op", "split", "--plane-point", 0, 0, 0, "--plane-normal", 0, 0, 0), "--plane-normal"),
    (("--label", "bone", "--op", "scissors", "--polygon", 1, 2, 3), "--polygon"),
])
def test_bad_input_exit_2_one_line(case_path, args, needle):
    proc = run("edit", case_path, *args, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr
