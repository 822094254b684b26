"""The case report on the real Cranium twin: PDF pages looked at as images, HTML parsed, no identifiers."""
from __future__ import annotations

import base64
import io
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from app.project import load_case
from app.report import Figure, Table, build_report, centerline_profiles, redact
from app.report_output import render_html, write_report
from tests.app.twin_case import CRANIUM_PATIENT_NAME, cranium_twin

pytest.importorskip("dolfinx", reason="Debian python3-dolfinx-real is installed by make setup")
pytestmark = [pytest.mark.fem, pytest.mark.slow]


@pytest.fixture(scope="session")
def twin(tmp_path_factory, demo_case_path):
    return cranium_twin(tmp_path_factory.mktemp("twin"))


@pytest.fixture(scope="module")
def case(twin):
    return load_case(twin)


@pytest.fixture(scope="module")
def model(case):
    return build_report(case, view_size=(480, 360))


class _Html(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tables, self.cells, self._cell = [], 0, [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "table":
            self.tables += 1
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None


def test_pdf_pages_are_not_blank(model, tmp_path):
    written = write_report(model, tmp_path / "report.pdf")
    assert written["format"] == "pdf" and written["pages"] >= 5  # summary, 3 scenarios, appendix
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(tmp_path / "report.pdf"), str(tmp_path / "page")],
                   check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == written["pages"]
    for page in pages:
        gray = np.asarray(Image.open(page).convert("L"), dtype=float)
        # A4 at 40 dpi; text + tables cover a few percent of a page, a figure far more.
        assert gray.std() > 8.0, page.name
        assert (gray < 200).mean() > 0.01, page.name
    dark = [(np.asarray(Image.open(p).convert("L")) < 200).mean() for p in pages]
    assert max(dark) > 0.15  # the scenario view page (dark 3D render) is there
    text = subprocess.run(["pdftotext", str(tmp_path / "report.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert CRANIUM_PATIENT_NAME not in text and "Cranium" not in text
    assert "advance3_tilt" in text and "stenosis60" in text and "Appendix: provenance" in text
    shutil.copy(pages[1], tmp_path.parent / "report_page2.png")  # looked at while writing the test


def test_html_is_self_contained_with_tables_and_numbers(model, case):
    doc = render_html(model)
    parser = _Html()
    parser.feed(doc)
    assert parser.tables == len(model.blocks(Table)) and parser.tables >= 12
    assert len(parser.images) == len(model.blocks(Figure)) >= 8
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert img.format == "PNG" and img.size[0] >= 300
    assert "http://" not in doc and "https://" not in doc and "<script" not in doc
    # The outcome table shows each scenario's stored numbers.
    adv = case.scenarios["advance5"].summary["max_skin_displacement_mm"]
    assert 3.0 < adv < 6.0 and f"{adv:.4g}" in parser.cells
    assert f"{case.scenarios['stenosis60'].summary['ffr_min']:.4g}" in parser.cells
    assert "Probability that FFR &lt; 0.80 (share of samples)" in doc and "seed" in parser.cells  # sweep reported
    assert "dofs" in parser.cells and "tissue_linear" in parser.cells  # solver report, provenance


def test_no_identifiers_unless_asked(model, case):
    doc = render_html(model)
    for needle in (CRANIUM_PATIENT_NAME, "Cranium", "/usr/share", "Cranium.inv3"):
        assert needle not in doc
    assert model.title.startswith("TwinPlan report: Case ") and not model.identified
    identified = build_report(case, identified=True, views=False)
    doc = render_html(identified)
    assert CRANIUM_PATIENT_NAME in doc and "Cranium" in identified.title


def test_ffr_profile_and_plots(case, model):
    line = case.scenarios["stenosis60"].surfaces["centerline"]
    (profile,) = centerline_profiles(line)
    s, ffr = profile["s_mm"], profile["ffr"]
    assert np.all(np.diff(s) > 0) and s[-1] == pytest.approx(60.0, abs=0.2)  # the 60 mm tube
    assert ffr[0] == pytest.approx(1.0, abs=0.01) and ffr.min() == pytest.approx(
        case.scenarios["stenosis60"].summary["ffr_min"], abs=1e-9)
    assert np.all(profile["p5"] <= ffr) and np.all(ffr <= profile["p95"])
    titles = {s.title: [b.title for b in s.blocks if isinstance(b, Figure)] for s in model.sections}
    assert titles["Scenario: stenosis60"] == ["Predicted result", "Plot", "Uncertainty"]
    assert titles["Scenario: advance5"] == ["Predicted result", "Plot"]  # view + displacement histogram
    assert model.meta["build_seconds"] > 0


def test_redact_parameters_and_strings():
    value = {"path": "/data/DOE^JOHN/ct", "series_uid": "1.2.3", "inputs": ["file:DOE_JOHN.inv3", "label/bone"],
             "note": "made for DOE^JOHN", "voxel_mm": 4.0}
    out = redact(value, ["DOE^JOHN"])
    assert out == {"path": "[removed]", "series_uid": "[removed]", "inputs": ["file:[removed]", "label/bone"],
                   "note": "made for [removed]", "voxel_mm": 4.0}
