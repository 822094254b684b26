"""`twinplan ...`: every pipeline step without a GUI (no Qt imported here).

Bad input exits with code 2 and one line on stderr naming the file or
parameter; no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Optional, Sequence

from app import __version__

log = logging.getLogger("twinplan")

#: Modules adding subcommands: each defines ``register(subparsers)``.
EXTENSIONS = ("app.cli_pacs", "app.cli_export", "app.cli_fusion", "app.cli_edit", "app.cli_tissue", "app.cli_landmarks",
              "app.cli_report", "app.cli_thread", "app.cli_ffr", "app.cli_scenario")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"{self.prog}: {message}\n")
        raise SystemExit(2)


class TerminalProgress:
    """A progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._last = -1.0

    def __call__(self, fraction: float, message: str) -> None:
        if not self.enabled or (fraction - self._last < 0.01 and fraction < 1.0):
            return
        self._last = fraction
        width = 30
        n = int(width * max(0.0, min(1.0, fraction)))
        sys.stderr.write(f"\r[{'#' * n}{'.' * (width - n)}] {fraction * 100:5.1f}% {message[:50]:<50}")
        if fraction >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self._last < 1.0:
            sys.stderr.write("\n")


def emit(data: dict, as_json: bool, lines: Sequence[str]) -> None:
    """Print ``data`` as JSON, or ``lines`` for people."""
    if as_json:
        print(json.dumps(data, indent=1))
    else:
        print("\n".join(lines))


def cmd_info(args) -> int:
    from app.pipeline import INVESALIUS_SUFFIXES
    from imaging.dicom import scan_dicom_folder

    from imaging.volume_io import is_volume_file, load_volume_file

    path = Path(args.path)
    if path.is_file() and (path.suffix.lower() in INVESALIUS_SUFFIXES or is_volume_file(path)):
        if is_volume_file(path):
            vol = load_volume_file(path)
        else:
            from imaging.invesalius import load_invesalius_project

            vol = load_invesalius_project(path, load_surfaces=False).volume
        data = {"series": [{
            "series_uid": vol.series_uid, "modality": vol.modality, "description": vol.description,
            "n_slices": vol.dims_xyz[2], "dims_xyz": list(vol.dims_xyz),
            "spacing_xyz": list(vol.geometry.spacing_xyz), "origin": list(vol.geometry.origin_xyz),
            "warnings": list(vol.warnings)}], "skipped": []}
    else:
        bar = TerminalProgress()
        data = scan_dicom_folder(path, progress=bar).to_json()
        bar.done()
    lines = []
    for s in data["series"]:
        lines.append(f"{s['series_uid']}  {s['modality']:<3} {s['n_slices']:>4} slices  "
                     f"{'x'.join(map(str, s['dims_xyz']))}  "
                     f"spacing {', '.join(f'{v:.4g}' for v in s['spacing_xyz'])} mm  {s['description']}")
        lines.extend(f"    warning: {w}" for w in s["warnings"])
    if data["skipped"]:
        lines.append(f"skipped {len(data['skipped'])} file(s):")
        lines.extend(f"    {k['path']}: {k['reason']}" for k in data["skipped"][:20])
    if not data["series"]:
        lines.insert(0, "no image series found")
    emit(data, args.json, lines)
    return 0


def cmd_import(args) -> int:
    from app.pipeline import import_scan
    from app.project import save_case

    bar = TerminalProgress()
    case = import_scan(args.path, series_uid=args.series, progress=bar)
    bar.done()
    out = save_case(case, args.out)
    name, vol = case.primary_volume()
    data = {"case": str(out), "volume": name, "dims_xyz": list(vol.dims_xyz),
            "spacing_xyz": list(vol.geometry.spacing_xyz), "warnings": vol.warnings,
            "labels": sorted(case.labels), "surfaces": sorted(case.surfaces)}
    emit(data, args.json, [f"imported {'x'.join(map(str, vol.dims_xyz))} volume into {out}"]
          + [f"    warning: {w}" for w in vol.warnings])
    return 0


def _run_step(args, step, **params) -> tuple:
    from app.pipeline import apply_result
    from app.project import load_case, save_case

    case = load_case(args.case)
    bar = TerminalProgress()
    result = step(case, progress=bar, **params)
    bar.done()
    apply_result(case, result)
    save_case(case, args.case)
    return case, result


def cmd_segment(args) -> int:
    from app.pipeline import step_segment

    _case, result = _run_step(args, step_segment, label=args.label, hu_range=args.hu, preset=args.preset,
                              keep_largest=not args.all_components, fill_holes=not args.no_fill)
    r = result.report
    emit(r, args.json, [f"label {r['label']}: {r['voxels']} voxels, {r['volume_mm3'] / 1000:.1f} ml"])
    return 0


def cmd_mesh(args) -> int:
    from app.pipeline import step_mesh
    from imaging.meshing import export_surface

    out = Path(args.out)
    if out.suffix.lower() not in (".stl", ".ply", ".obj", ".vtp"):
        sys.stderr.write(f"twinplan mesh: --out {out}: use a .stl, .ply, .obj or .vtp file name\n")
        return 2
    t0 = time.perf_counter()
    _case, result = _run_step(args, step_mesh, label=args.label, smoothing_iterations=args.smooth,
                              decimate=args.decimate)
    export_surface(result.item, out)
    r = dict(result.report, file=str(out), seconds=round(time.perf_counter() - t0, 4))
    emit(r, args.json, [f"{out}: {r['n_faces']} faces, {r['area_mm2']:.0f} mm2, "
                         f"{r['volume_mm3'] / 1000:.1f} ml, watertight={r['watertight']}"])
    return 0


def cmd_demo(args) -> int:
    from app.demo import run_demo

    bar = TerminalProgress()
    summary = run_demo(Path(args.out), progress=bar)
    bar.done()
    emit(summary, args.json, [f"demo written to {args.out}:"] + [f"    {f}" for f in summary["files"]])
    return 0


def build_parser() -> argparse.ArgumentParser:
    from imaging.segment import HU_PRESETS

    p = _Parser(prog="twinplan", description="TwinPlan surgical planning, headless.")
    p.add_argument("--version", action="version", version=f"twinplan {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("info", help="list the image series in a DICOM folder or .inv3 project")
    s.add_argument("path")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("import", help="import a DICOM series or .inv3 project into a new case")
    s.add_argument("path")
    s.add_argument("--out", required=True, help="project folder CASE.twin")
    s.add_argument("--series", help="SeriesInstanceUID (default: the largest series)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("segment", help="threshold the CT into a named label")
    s.add_argument("case")
    s.add_argument("--label", required=True)
    rng = s.add_mutually_exclusive_group(required=True)
    rng.add_argument("--hu", nargs=2, type=float, metavar=("LO", "HI"), help="threshold range (HU)")
    rng.add_argument("--preset", choices=sorted(HU_PRESETS),
                     help="range suited to the scan (fixed HU for CT, from the image for dental CBCT)")
    s.add_argument("--all-components", action="store_true", help="keep every connected component")
    s.add_argument("--no-fill", action="store_true", help="do not fill enclosed holes")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_segment)

    s = sub.add_parser("mesh", help="build and export the surface of a label")
    s.add_argument("case")
    s.add_argument("--label", required=True)
    s.add_argument("--out", required=True, help="FILE.stl|.ply|.obj|.vtp")
    s.add_argument("--smooth", type=int, default=20, help="smoothing iterations (default 20)")
    s.add_argument("--decimate", type=float, default=0.0, help="triangle reduction 0..0.95")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_mesh)

    s = sub.add_parser("demo", help="run the whole pipeline on the demo head CT")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_demo)

    for name in EXTENSIONS:
        importlib.import_module(name).register(sub)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `twinplan` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from imaging.errors import TwinPlanError

    try:
        return int(args.func(args) or 0)
    except TwinPlanError as exc:
        sys.stderr.write(f"twinplan {args.command}: {exc}\n")
        return 2
    except CancelledError:
        sys.stderr.write(f"twinplan {args.command}: cancelled\n")
        return 130
    except KeyboardInterrupt:
        sys.stderr.write(f"twinplan {args.command}: interrupted\n")
        return 130
    except Exception as exc:  # last resort: one line, details only with -v
        log.debug("internal error", exc_info=True)
        sys.stderr.write(f"twinplan {args.command}: internal error: {exc.__class__.__name__}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
