"""The case report: summary, scenario views, plots, tables, solver reports, provenance (no Qt).

:func:`build_report` turns a case into a :class:`ReportModel` (sections of
paragraphs, tables and PNG figures); ``app.report_output`` writes it as PDF
or self-contained HTML. The report is patient-free by default: no name, ID
or birth date, no source paths or UIDs, and any identifier found in the
original source is scrubbed from every string. ``identified=True`` adds the
identifiers read back from the source the case was imported from.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import plistlib
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from app.case import Case
from app.rehearsal import ScenarioView, list_scenarios
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress

log = logging.getLogger(__name__)

REDACTED = "[removed]"
#: Provenance parameters that can carry identifiers (file paths name patients; UIDs are identifiers too).
REDACT_KEYS = ("path", "paths", "folder", "source", "series_uid", "study_uid", "file", "files")


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    title: str
    png: bytes
    caption: str = ""


Block = Union[Paragraph, Table, Figure]


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class ReportModel:
    """Everything the writers need; ``meta`` holds counts and timings."""

    title: str
    subtitle: str
    identified: bool
    sections: list[Section]
    meta: dict = field(default_factory=dict)

    def blocks(self, kind: type) -> list:
        return [b for s in self.sections for b in s.blocks if isinstance(b, kind)]


# -- identifiers ------------------------------------------------------------------
def source_identifiers(case: Case) -> dict[str, str]:
    """Patient identifiers in the source the case was imported from (read back, never stored in the case).

    Returns
    -------
    dict
        ``patient_name``, ``patient_id``, ``birth_date`` (those found; empty if the
        source is gone or holds none). InVesalius projects keep the patient name
        as the project ``name`` in ``main.plist``.
    """
    for prov in case.provenance.values():
        path = Path(str(prov.params.get("path", "")))
        try:
            if prov.operation == "import_invesalius" and path.is_file():
                return _inv3_identifiers(path)
            if prov.operation == "import_dicom" and path.exists():
                return _dicom_identifiers(path, str(prov.params.get("series_uid", "")))
        except (OSError, tarfile.TarError, plistlib.InvalidFileException, ValueError) as exc:
            log.warning("could not read identifiers back from the source (%s)", exc.__class__.__name__)
            return {}
    return {}


def _inv3_identifiers(path: Path) -> dict[str, str]:
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith("main.plist") and member.size < 1 << 20:
                main = plistlib.loads(tar.extractfile(member).read())
                name = str(main.get("name", "")).strip()
                return {"patient_name": name} if name else {}
    return {}


def _dicom_identifiers(path: Path, series_uid: str) -> dict[str, str]:
    import pydicom

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files[:2000]:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=[
                "PatientName", "PatientID", "PatientBirthDate", "SeriesInstanceUID"])
        except Exception:  # not DICOM: keep looking
            continue
        if series_uid and str(ds.get("SeriesInstanceUID", "")) != series_uid:
            continue
        out = {"patient_name": str(ds.get("PatientName", "")), "patient_id": str(ds.get("PatientID", "")),
               "birth_date": str(ds.get("PatientBirthDate", ""))}
        return {k: v for k, v in out.items() if v.strip()}
    return {}


def redact(value: Any, scrub: list[str]) -> Any:
    """A copy of ``value`` without identifying parameters and with every ``scrub`` string removed."""
    if isinstance(value, dict):
        return {k: (REDACTED if k in REDACT_KEYS else redact(v, scrub)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, scrub) for v in value]
    if isinstance(value, str):
        if value.startswith("file:") and " (" not in value:  # a source id names the file
            return "file:" + REDACTED
        for s in scrub:
            value = value.replace(s, REDACTED)
    return value


# -- formatting -----------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str, separators=(",", ":"))
    return str(v)


def _kv_table(title: str, d: dict) -> Table:
    return Table(title, ["Key", "Value"], [[str(k), _fmt(v)] for k, v in d.items()])


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _figure(w_in: float, h_in: float, ncols: int = 1):
    """A matplotlib figure without pyplot (no GUI backend: safe on worker threads) and its axes."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(w_in, h_in))
    return fig, fig.subplots(1, ncols)


def _array_png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# -- sections -------------------------------------------------------------------
def _case_section(case: Case, identity: dict[str, str], identified: bool) -> Section:
    sec = Section("Case summary")
    if identified:
        rows = [[k.replace("_", " "), v] for k, v in identity.items()] or [["identifiers", "none found in the source"]]
        sec.blocks.append(Table("Patient (identified report: handle as patient data)", ["Field", "Value"], rows))
    else:
        sec.blocks.append(Paragraph("De-identified report: no patient name, ID, birth date, source path or "
                                    "UID. Generate with --identified for a report that names the patient."))
    sec.blocks.append(Table("Volumes", ["Name", "Modality", "Voxels (x, y, z)", "Spacing (mm)"], [
        [n, v.modality, " x ".join(map(str, v.dims_xyz)), _fmt(list(v.geometry.spacing_xyz))]
        for n, v in case.volumes.items()]))
    rows = []
    for n, lab in case.labels.items():
        voxels = int(np.count_nonzero(lab.array))
        rows.append([n, str(voxels), f"{voxels * float(np.prod(lab.geometry.spacing_xyz)) / 1000:.1f}"])
    sec.blocks.append(Table("Labels", ["Name", "Voxels", "Volume (ml)"], rows))
    sec.blocks.append(Table("Surfaces", ["Name", "Points", "Triangles"], [
        [n, str(s.n_points), str(s.n_cells)] for n, s in case.surfaces.items()]))
    if case.landmarks:
        sec.blocks.append(Table("Landmarks (LPS mm)", ["Name", "x", "y", "z"], [
            [m.name, *(f"{c:.1f}" for c in m.position_lps)] for m in case.landmarks.values()]))
    if case.volumes:
        sec.blocks.append(Figure("CT slices", _slices_png(case), "Axial, coronal and sagittal slices through the "
                                 "centre, bone window, labels overlaid."))
    return sec


def _slices_png(case: Case) -> bytes:
    import tempfile

    from PIL import Image

    from app.render import slice_png

    _, vol = case.primary_volume()
    # Small labels only (bone, segments): a skin label would tint the whole head.
    labels = [lab for lab in case.labels.values() if lab.geometry.same_grid(vol.geometry) and lab.labels
              and np.count_nonzero(lab.array) < 0.1 * lab.array.size][:3]
    fig, axes = _figure(10, 3.6, 3)
    with tempfile.TemporaryDirectory() as tmp:
        for ax, view in zip(axes, ("axial", "coronal", "sagittal")):
            ax.imshow(np.asarray(Image.open(slice_png(vol, view, Path(tmp) / f"{view}.png", labels=labels))))
            ax.set_title(view)
            ax.axis("off")
    return _png(fig)


def _scenario_view(case: Case, sc: ScenarioView, size: tuple[int, int]) -> Optional[bytes]:
    """The scenario's result scene (last rehearsal step) rendered offscreen."""
    import pyvista as pv

    from app.rehearsal import build_rehearsal
    from app.rehearsal_video import draw_layers, paint_legend, set_camera
    from imaging.errors import InputError

    try:
        reh = build_rehearsal(case, sc.name, frames_per_step=1, move_frames=2)
    except InputError as exc:
        log.info("no view for scenario: %s", exc)
        return None
    plotter = pv.Plotter(off_screen=True, window_size=list(size))
    try:
        plotter.set_background("#1e1e24")
        layers = reh.scene(len(reh.steps) - 1, 1.0)
        draw_layers(plotter, layers, scalar_bar=False)
        set_camera(plotter, reh.camera)
        return _array_png(paint_legend(np.asarray(plotter.screenshot(return_img=True))[..., :3], layers))
    finally:
        plotter.close()


def _histogram_png(sc: ScenarioView) -> Optional[bytes]:
    arrays = [(n, np.asarray(s.point_data["displacement_norm_mm"])) for n, s in sc.surfaces.items()
              if "displacement_norm_mm" in s.point_data]
    if not arrays:
        return None
    fig, ax = _figure(7, 3.2)
    for name, values in arrays:
        ax.hist(values, bins=40, alpha=0.75, label=f"{name} ({len(values)} points)")
    ax.set_xlabel("skin displacement (mm)")
    ax.set_ylabel("surface points")
    ax.set_title(f"{sc.name}: displacement histogram")
    ax.legend()
    return _png(fig)


def centerline_profiles(surface) -> list[dict]:
    """FFR along each polyline of a centerline surface (point array ``FFR``, any case).

    Returns
    -------
    list of dict
        One per line: ``s_mm`` (arc length from the line's first point), ``ffr``, and
        ``p5``/``p95`` when point arrays ``<FFR>_p5`` and ``<FFR>_p95`` (uncertainty bands) exist.
    """
    key = next((a for a in surface.point_data if a.lower() == "ffr"), None)
    if key is None or surface.n_lines == 0:
        return []
    lines = np.asarray(surface.lines)
    out, i = [], 0
    while i < len(lines):
        n = int(lines[i])
        ids = lines[i + 1:i + 1 + n]
        i += n + 1
        pts = np.asarray(surface.points)[ids]
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        prof = {"s_mm": s, "ffr": np.asarray(surface.point_data[key])[ids]}
        for p in ("p5", "p95"):
            band = f"{key}_{p}"
            if band in surface.point_data:
                prof[p] = np.asarray(surface.point_data[band])[ids]
        out.append(prof)
    return out


def _ffr_png(sc: ScenarioView) -> Optional[bytes]:
    profiles = [(n, p) for n, s in sc.surfaces.items() for p in centerline_profiles(s)]
    if not profiles:
        return None
    fig, ax = _figure(7, 3.4)
    for k, (name, p) in enumerate(profiles):
        line, = ax.plot(p["s_mm"], p["ffr"], label=f"{name} line {k + 1}")
        if "p5" in p and "p95" in p:
            ax.fill_between(p["s_mm"], p["p5"], p["p95"], color=line.get_color(), alpha=0.25)
    ax.axhline(0.80, color="red", linestyle="--", linewidth=1, label="FFR 0.80")
    ax.set_xlabel("distance along centerline (mm)")
    ax.set_ylabel("FFR")
    ax.set_title(f"{sc.name}: FFR along centerlines" + (" (bands 5-95 %)" if any("p5" in p for _, p in profiles)
                                                        else ""))
    ax.legend(fontsize=7)
    return _png(fig)


def _bands_png(sc: ScenarioView, bands: dict) -> bytes:
    names = list(bands)
    fig, ax = _figure(7, 0.5 + 0.4 * len(names))
    for y, key in enumerate(names):
        b = bands[key]
        ax.plot([b["p5"], b["p95"]], [y, y], color="tab:blue", linewidth=6, alpha=0.4)
        ax.plot([b["p50"]], [y], "o", color="tab:blue")
    ax.set_yticks(range(len(names)), names)
    ax.set_title(f"{sc.name}: uncertainty (5th-95th percentile, dot = median)")
    return _png(fig)


def render_scenario_views(case: Case, size: tuple[int, int] = (800, 600)) -> dict[str, bytes]:
    """PNG of each scenario's result scene, rendered offscreen (call on the thread that owns VTK rendering)."""
    views = {}
    for name, sc in list_scenarios(case).items():
        png = _scenario_view(case, sc, size)
        if png is not None:
            views[name] = png
    return views


def _scenario_section(case: Case, sc: ScenarioView, size: tuple[int, int], views) -> Section:
    sec = Section(f"Scenario: {sc.name}")
    sec.blocks.append(Paragraph(f"Kind: {sc.kind or 'unknown'}; branched from: {sc.parent or 'baseline'}."))
    sec.blocks.append(_kv_table("Parameters", sc.params))
    png = views.get(sc.name) if isinstance(views, dict) else (_scenario_view(case, sc, size) if views else None)
    if png is not None:
        what = "FFR on the centerline" if sc.kind == "ffr" else "displacement magnitude, mm"
        sec.blocks.append(Figure("Predicted result", png, f"Offscreen render of the scenario's result (colour: {what})."))
    for png in (_histogram_png(sc), _ffr_png(sc)):
        if png is not None:
            sec.blocks.append(Figure("Plot", png))
    summary = sc.results.get("summary") or {}
    if summary:
        sec.blocks.append(Table("Outcomes", ["Outcome", "Value"], [[k, _fmt(v)] for k, v in summary.items()]))
    marks = sc.results.get("landmarks") or (sc.results.get("solver") or {}).get("landmarks") or {}
    if marks:
        sec.blocks.append(Table("Landmark displacements (mm, LPS)", ["Landmark", "|d|", "dx", "dy", "dz"], [
            [n, f"{v['displacement_norm_mm']:.2f}", *(f"{c:.2f}" for c in v["displacement_mm"])]
            for n, v in marks.items()]))
    sweep = sc.results.get("sweep") or {}
    if sweep.get("bands"):
        bands = sweep["bands"]
        sec.blocks.append(Table("Uncertainty bands", ["Outcome", "p5", "p50", "p95"], [
            [k, _fmt(b["p5"]), _fmt(b["p50"]), _fmt(b["p95"])] for k, b in bands.items()]))
        sec.blocks.append(Figure("Uncertainty", _bands_png(sc, bands)))
        prob = sweep.get("probability_ffr_below_0_80")
        if isinstance(prob, dict) and prob:
            sec.blocks.append(Table("Probability that FFR < 0.80 (share of samples)", ["Outcome", "P"],
                                    [[k, _fmt(v)] for k, v in prob.items()]))
        extra = {k: v for k, v in sweep.items() if k != "bands" and not isinstance(v, (list, dict))}
        if extra:
            sec.blocks.append(_kv_table("Sweep", extra))
    solver = dict(sc.results.get("solver") or {})
    solver.pop("landmarks", None)
    if sc.results.get("mesh"):
        solver["mesh"] = sc.results["mesh"]
    if solver:
        sec.blocks.append(_kv_table("Solver report", solver))
    return sec


def _overview_table(scenarios: dict[str, ScenarioView]) -> Optional[Table]:
    outcomes: dict[str, dict[str, Any]] = {}
    for sc in scenarios.values():
        for k, v in (sc.results.get("summary") or {}).items():
            outcomes.setdefault(k, {})[sc.name] = v
    if not outcomes:
        return None
    names = list(scenarios)
    return Table("Key outcomes side by side", ["Outcome", *names],
                 [[k, *(_fmt(row.get(n, "")) for n in names)] for k, row in outcomes.items()])


def _provenance_section(case: Case, deidentify: bool) -> Section:
    sec = Section("Appendix: provenance")
    items = list(case.provenance.items())
    for name, sc in (getattr(case, "scenarios", None) or {}).items():
        if getattr(sc, "provenance", None) is not None:
            items.append((f"scenario/{name}", sc.provenance))
    rows, versions = [], {}
    for iid, p in items:
        ids = [redact(str(i.get("id", "")), []) if deidentify else str(i.get("id", "")) for i in p.inputs]
        inputs = ", ".join(f"{n} ({str(i.get('hash', ''))[:10]})" for n, i in zip(ids, p.inputs))
        rows.append([iid, p.operation, p.time[:16].replace("T", " "), p.user, inputs, p.output_hash[:12], _fmt(p.params)])
        versions.update(p.versions)
    sec.blocks.append(Paragraph("Every derived item with the operation, parameters, inputs (id and content "
                                "hash) and output hash that produced it; enough to replay the case."))
    sec.blocks.append(Table("Items", ["Item", "Operation", "Time (UTC)", "User", "Inputs", "Output hash",
                                      "Parameters"], rows))
    if versions:
        sec.blocks.append(_kv_table("Software versions", versions))
    return sec


# -- building ----------------------------------------------------------------------
def build_report(case: Case, *, identified: bool = False, views: Union[bool, dict] = True,
                 view_size: tuple[int, int] = (800, 600),
                 progress: Optional[ProgressFn] = None, cancelled: Optional[CancelledFn] = None) -> ReportModel:
    """The report of a case: summary, every scenario (view, plots, tables, solver report), provenance.

    Parameters
    ----------
    case : Case
        The case (with scenarios in ``case.scenarios`` and/or stored soft-tissue plan results).
    identified : bool
        Include the patient identifiers read back from the source. Default False: de-identified.
    views : bool or dict
        Render a 3D view of each scenario offscreen (seconds each), or the PNGs by scenario name
        from :func:`render_scenario_views` (the GUI renders them on its own thread).
    view_size : (int, int)
        Pixel size of those views.

    Returns
    -------
    ReportModel
        ``meta`` has ``scenarios``, ``figures``, ``tables``, ``build_seconds``.

    Raises
    ------
    concurrent.futures.CancelledError
        ``cancelled()`` became true between sections.
    """
    progress = progress or no_progress
    t0 = time.perf_counter()
    identity = source_identifiers(case)
    scrub = sorted({v for v in identity.values() if len(v) >= 3}, key=len, reverse=True)
    if not identified:
        scrub += [case.name] if len(case.name) >= 3 else []
    _, vol = case.primary_volume() if case.volumes else (None, None)
    label = case.name if identified else f"Case {vol.content_hash()[:8] if vol is not None else 'unknown'}"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    progress(0.05, "Case summary")
    sections = [_case_section(case, identity, identified)]
    scenarios = list_scenarios(case)
    overview = _overview_table(scenarios)
    if overview is not None:
        sections.append(Section("Scenarios compared", [overview]))
    for i, sc in enumerate(scenarios.values()):
        check_cancelled(cancelled)
        progress(0.1 + 0.8 * i / max(len(scenarios), 1), f"Scenario {sc.name}")
        sections.append(_scenario_section(case, sc, view_size, views))
    check_cancelled(cancelled)
    sections.append(_provenance_section(case, not identified))
    from app import __version__

    model = ReportModel(f"TwinPlan report: {label}", f"Generated {stamp} by TwinPlan {__version__}",
                        identified, sections)
    if not identified:
        _scrub_model(model, scrub)
    model.meta = {"scenarios": list(scenarios), "figures": len(model.blocks(Figure)),
                  "tables": len(model.blocks(Table)), "build_seconds": round(time.perf_counter() - t0, 3)}
    progress(1.0, "Report built")
    return model


def _scrub_model(model: ReportModel, scrub: list[str]) -> None:
    """Remove identifying parameters and strings from every text of the model, in place."""
    model.title = redact(model.title, scrub)
    for sec in model.sections:
        sec.title = redact(sec.title, scrub)
        for b in sec.blocks:
            if isinstance(b, Paragraph):
                b.text = redact(b.text, scrub)
            elif isinstance(b, Figure):
                b.title, b.caption = redact(b.title, scrub), redact(b.caption, scrub)
            else:
                b.title = redact(b.title, scrub)
                b.rows = [[_redact_cell(c, scrub) for c in row] for row in b.rows]


def _redact_cell(text: str, scrub: list[str]) -> str:
    if text.startswith("{"):
        try:
            return _fmt(redact(json.loads(text), scrub))
        except ValueError:
            pass
    return redact(text, scrub)
