"""`twinplan report` and `twinplan rehearse` as a user runs them (subprocess, real Cranium twin)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import imageio.v3 as iio
import pytest

from tests.app.twin_case import CRANIUM_PATIENT_NAME, cranium_twin

pytest.importorskip("dolfinx", reason="Debian python3-dolfinx-real is installed by make setup")
pytestmark = [pytest.mark.fem, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def twin(tmp_path_factory, demo_case_path):
    return cranium_twin(tmp_path_factory.mktemp("twin"))


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def test_report_pdf_json_contract(twin, tmp_path):
    out = json.loads(run("report", twin, "--out", tmp_path / "r.pdf", "--no-views", "--json").stdout)
    assert set(out) >= {"file", "format", "pages", "bytes", "identified", "scenarios", "sections", "figures",
                        "tables", "build_seconds", "seconds"}
    assert out["format"] == "pdf" and out["identified"] is False
    assert out["scenarios"] == ["advance5", "advance3_tilt", "stenosis60"]
    info = subprocess.run(["pdfinfo", out["file"]], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Pages:\s+(\d+)$", info, re.M).group(1) == str(out["pages"]) and out["pages"] >= 5
    text = subprocess.run(["pdftotext", out["file"], "-"], capture_output=True, text=True, check=True).stdout
    assert CRANIUM_PATIENT_NAME not in text and "Scenario: advance5" in text


def test_identified_html_names_the_patient(twin, tmp_path):
    out = json.loads(run("report", twin, "--out", tmp_path / "r.html", "--identified", "--no-views",
                         "--json").stdout)
    assert out["format"] == "html" and out["pages"] is None and out["identified"] is True
    doc = Path(out["file"]).read_text(encoding="utf-8")
    HTMLParser().feed(doc)  # parses
    assert CRANIUM_PATIENT_NAME in doc and doc.count("data:image/png;base64,") == out["figures"]


def test_rehearse_gif_json_contract(twin, tmp_path):
    out = json.loads(run("rehearse", twin, "--scenario", "advance5", "--out", tmp_path / "a.gif", "--fps", 4,
                         "--frames-per-step", 1, "--move-frames", 3, "--size", "256x192", "--json").stdout)
    assert set(out) >= {"file", "frames", "fps", "duration_s", "seconds", "size", "steps", "scenario"}
    assert out["frames"] == 6 and out["fps"] == 4 and out["duration_s"] == 1.5
    assert [s["frames"] for s in out["steps"]] == [1, 1, 3, 1]
    assert iio.imread(out["file"]).shape == (6, 192, 256, 3)


@pytest.mark.parametrize("args, needle", [
    (("report", "{twin}", "--out", "r.docx"), "r.docx"),
    (("rehearse", "{twin}", "--scenario", "nope", "--out", "a.gif"), "nope"),
    (("rehearse", "{twin}", "--scenario", "advance5", "--out", "a.gif", "--size", "big"), "--size"),
])
def test_bad_input_exit_2_one_line(twin, tmp_path, args, needle):
    proc = run(*(str(a).format(twin=twin) for a in args), check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr
