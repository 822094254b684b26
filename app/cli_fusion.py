"""`twinplan fuse`, `twinplan register` and `twinplan surface-info` (registered by app.cli; no Qt).

``fuse`` aligns a surface scan to a CT surface of a case and stores the
moved scan (with its distance map) in the case; ``register`` aligns two
images; ``surface-info`` reports what import and repair would find in a file.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np


def register(subparsers) -> None:
    """Add the ``fuse``, ``register`` and ``surface-info`` subcommands."""
    s = subparsers.add_parser("fuse", help="align a surface scan (STL/PLY/OBJ) to a CT surface of a case")
    s.add_argument("scan", help="surface scan file (.stl, .ply, .obj, .vtk, .vtp)")
    s.add_argument("case", help="project folder CASE.twin")
    s.add_argument("--target", required=True, metavar="LABEL",
                   help="surface of the case to align to; if there is none by that name, the label is meshed")
    s.add_argument("--region", default="all",
                   help="part of the target the scan covers: all, face, crowns, or LPS mm bounds "
                        "XMIN,XMAX,YMIN,YMAX,ZMIN,ZMAX (default all)")
    s.add_argument("--landmarks", metavar="FILE",
                   help="start from 3+ point pairs: JSON {\"scan\": [[x,y,z],...], \"target\": [...]} "
                        "or CSV rows sx,sy,sz,tx,ty,tz (scan points in the file's units, target in "
                        "patient LPS mm)")
    s.add_argument("--units", default="auto", help="scan units: auto, mm, cm, m, in, um (default auto)")
    s.add_argument("--inlier-mm", type=float, default=1.0, help="distance counted as a match (default 1 mm)")
    s.add_argument("--voxel-mm", type=float, help="feature scale (default: scan size / 50)")
    s.add_argument("--seed", type=int, default=0, help="RANSAC seed (default 0)")
    s.add_argument("--repair", action="store_true", help="repair the scan mesh before fusion")
    s.add_argument("--max-faces", type=int, help="decimate the stored scan to about this many triangles")
    s.add_argument("--name", help="name of the fused surface in the case (default SCANSTEM_fused)")
    s.add_argument("--no-save", action="store_true", help="do not store the fused scan in the case")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_fuse)

    s = subparsers.add_parser("register", help="rigid/affine image registration (Mattes mutual information)")
    s.add_argument("fixed", help="DICOM folder, NIfTI/NRRD file, .inv3 project or CASE.twin")
    s.add_argument("moving", help="DICOM folder, NIfTI/NRRD file, .inv3 project or CASE.twin")
    s.add_argument("--kind", choices=("rigid", "affine"), default="rigid")
    s.add_argument("--levels", default="4,2,1", help="shrink factor per resolution level (default 4,2,1)")
    s.add_argument("--sampling", type=float, default=0.05, help="fraction of voxels sampled (default 0.05)")
    s.add_argument("--iterations", type=int, default=200, help="maximum iterations per level (default 200)")
    s.add_argument("--out", help="also write the moving image resampled onto the fixed grid (.nii.gz/.nrrd)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_register)

    s = subparsers.add_parser("surface-info", help="size, units, closedness and possible repairs of a surface file")
    s.add_argument("file")
    s.add_argument("--units", default="auto")
    s.add_argument("--max-hole-mm", type=float, default=5.0, help="holes up to this radius count as fillable")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_surface_info)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _parse_region(text: str):
    from imaging.errors import InputError
    from imaging.fusion import REGION_PRESETS

    if text in REGION_PRESETS:
        return text
    try:
        bounds = [float(v) for v in text.split(",")]
    except ValueError:
        bounds = []
    if len(bounds) != 6:
        raise InputError(f"--region {text}: use {', '.join(REGION_PRESETS)} or six numbers XMIN,XMAX,...,ZMAX")
    return bounds


def _read_landmarks(path: str) -> tuple[np.ndarray, np.ndarray]:
    from imaging.errors import InputError

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--landmarks {file}: {exc.strerror}") from exc
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
            pairs = np.hstack([np.asarray(data["scan"], float), np.asarray(data["target"], float)])
        else:
            pairs = np.loadtxt(file, delimiter=",", ndmin=2, comments="#")
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--landmarks {file}: not readable as point pairs ({exc})") from exc
    if pairs.ndim != 2 or pairs.shape[1] != 6:
        raise InputError(f"--landmarks {file}: expected rows of 6 numbers (scan xyz, target xyz)")
    return pairs[:, :3], pairs[:, 3:]


def _target_surface(case, name: str, progress):
    """(surface, provenance input, description) of the fusion target."""
    from app.pipeline import step_mesh
    from imaging.errors import InputError

    if name in case.surfaces:
        return case.surfaces[name], case.input_ref("surface", name), "surface"
    if name in case.labels:
        result = step_mesh(case, label=name, progress=lambda f, m: progress(0.3 * f, m))
        return result.item, case.input_ref("label", name), "label meshed on the fly"
    raise InputError(f"--target {name}: no surface or label of that name in the case "
                     f"(surfaces: {', '.join(case.surfaces) or 'none'}; labels: {', '.join(case.labels) or 'none'}); "
                     f"create one with `twinplan segment`")


def cmd_fuse(args) -> int:
    from app.case import Provenance
    from app.cli import TerminalProgress, emit
    from app.project import load_case, save_case
    from imaging.errors import InputError
    from imaging.fusion import fuse_surface
    from imaging.surface import decimate_surface, load_surface, repair_surface

    t_start = time.perf_counter()
    region = _parse_region(args.region)
    landmarks = _read_landmarks(args.landmarks) if args.landmarks else None
    name = args.name or f"{Path(args.scan).stem}_fused"
    if name == args.target:
        raise InputError(f"--name {name}: would replace the target surface; pick another name")
    bar = TerminalProgress()
    scan = load_surface(args.scan, units=args.units)
    surface = scan.surface
    if landmarks is not None:  # scan points are picked in the file's own units
        landmarks = (landmarks[0] * scan.units.scale_to_mm, landmarks[1])
    case = load_case(args.case)
    repair_report = None
    if args.repair and surface.n_cells:
        surface, repair_report = repair_surface(surface)
    target, target_ref, target_kind = _target_surface(case, args.target, bar)
    volume = case.primary_volume()[1] if case.volumes else None
    result = fuse_surface(surface, target, region=region, volume=volume, landmarks=landmarks,
                          voxel_mm=args.voxel_mm, inlier_mm=args.inlier_mm, seed=args.seed,
                          progress=lambda f, m: bar(0.3 + 0.65 * f, m))
    moved = result.moved
    if args.max_faces:
        moved = decimate_surface(moved, args.max_faces)
    data = result.to_json()
    data.update(scan=str(args.scan), units=scan.units.units, units_reason=scan.units.reason,
                target=args.target, target_kind=target_kind, region=args.region, warnings=scan.warnings)
    if repair_report is not None:
        data["repair"] = repair_report["done"]
    if not args.no_save:
        params = {k: data[k] for k in ("matrix", "rms_mm", "inlier_fraction", "inlier_mm", "method", "units",
                                       "region", "voxel_mm")}
        params.update(seed=args.seed, target=args.target, scan=str(args.scan))
        inputs = [{"id": "file:" + Path(args.scan).name, "hash": _sha256(Path(args.scan))}, target_ref]
        case.set_item("surface", name, moved, Provenance("fuse_surface", params, inputs))
        save_case(case, args.case)
        data.update(saved_as=name, case=str(args.case))
    bar(1.0, "done")
    bar.done()
    data["total_seconds"] = round(time.perf_counter() - t_start, 3)
    m = result.transform.matrix
    lines = [f"{Path(args.scan).name} -> {args.target}: RMS {data['rms_mm']:.3f} mm, "
             f"{100 * data['inlier_fraction']:.1f}% of {data['n_points']} points within {args.inlier_mm:g} mm, "
             f"rotation {data['rotation_deg']:.2f} deg, {data['seconds']:.2f} s",
             "matrix (scan -> patient LPS mm):"] + ["    " + " ".join(f"{v:10.4f}" for v in row) for row in m]
    lines += [f"    warning: {w}" for w in scan.warnings]
    if not args.no_save:
        lines.append(f"stored as surface {name!r} in {args.case}")
    emit(data, args.json, lines)
    return 0


def _load_volume(path: str):
    from app.pipeline import import_scan
    from app.project import load_case
    from imaging.errors import InputError

    src = Path(path)
    if src.is_dir() and (src.suffix == ".twin" or (src / "case.json").is_file()):
        case = load_case(src)
    else:
        case = import_scan(src)
    if not case.volumes:
        raise InputError(f"{src}: the case has no volume")
    return case.primary_volume()[1]


def cmd_register(args) -> int:
    from app.cli import TerminalProgress, emit
    from imaging.errors import InputError
    from imaging.registration import register_images, resample_volume

    try:
        levels = [int(v) for v in args.levels.split(",")]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise InputError(f"--levels {args.levels}: comma-separated shrink factors >= 1, e.g. 4,2,1")
    if args.out and not args.out.lower().endswith((".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")):
        raise InputError(f"--out {args.out}: use a .nii.gz, .nrrd or .mha file name")
    fixed, moving = _load_volume(args.fixed), _load_volume(args.moving)
    bar = TerminalProgress()
    result = register_images(fixed, moving, kind=args.kind, shrink_factors=levels,
                             smoothing_sigmas_mm=[s / 2.0 if s > 1 else 0.0 for s in levels],
                             sampling_fraction=args.sampling, max_iterations=args.iterations, progress=bar)
    bar.done()
    data = result.to_json()
    data.update(fixed=str(args.fixed), moving=str(args.moving))
    if args.out:
        import SimpleITK as sitk

        out = resample_volume(moving, fixed, result.transform)
        try:
            sitk.WriteImage(out.to_sitk(), args.out, useCompression=True)
        except RuntimeError as exc:
            raise InputError(f"--out {args.out}: cannot write ({str(exc).strip().splitlines()[-1]})") from exc
        data["out"] = args.out
    lines = [f"{args.kind} registration: MI {data['metric']:.4f}, {data['iterations']} iterations "
             f"{data['iterations_per_level']}, rotation {data['rotation_deg']:.3f} deg, {data['seconds']:.1f} s",
             "matrix (moving -> fixed, LPS mm):"]
    lines += ["    " + " ".join(f"{v:10.4f}" for v in row) for row in result.transform.matrix]
    emit(data, args.json, lines)
    return 0


def cmd_surface_info(args) -> int:
    from app.cli import emit
    from imaging.surface import inspect_surface, load_surface

    scan = load_surface(args.file, units=args.units, merge=False)
    report = inspect_surface(scan.surface, args.max_hole_mm)
    surface = scan.surface
    data = dict(scan.to_json(), **report)
    data.update(file_vertices=report["n_points"], n_points=report["n_points"] - report["duplicate_vertices"],
                format=Path(args.file).suffix.lower().lstrip("."),
                bounds_mm=[round(float(b), 4) for b in surface.bounds],
                area_mm2=round(float(surface.area), 3) if surface.n_cells else 0.0)
    lines = [f"{args.file}: {data['n_points']} points, {data['n_faces']} faces, units {data['units']} "
             f"({data['units_reason']})",
             f"    watertight {data['watertight']}, {data['holes']} hole(s)/border(s), "
             f"{data['non_manifold_edges']} non-manifold edge(s), {data['components']} component(s), "
             f"colours {data['has_colors']}"]
    lines += [f"    repair possible: {r}" for r in data["repairs_possible"]]
    lines += [f"    warning: {w}" for w in data["warnings"]]
    emit(data, args.json, lines)
    return 0
