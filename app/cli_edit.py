"""`twinplan edit CASE.twin --label NAME --op ...`: segmentation editing without a GUI.

Loads the case, applies one tool of ``imaging.segment_tools`` to a label,
stores the result with provenance and saves the case. No Qt imported here.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from app.cli import emit
from imaging.errors import InputError

OPS = ("grow", "islands", "paint", "erase", "morph", "fill", "combine", "split", "scissors")


def _need(args, name: str, op: str, attr: str = ""):
    value = getattr(args, attr or name.lstrip("-").replace("-", "_"))
    if value is None:
        raise InputError(f"{name}: required by --op {op}")
    return value


def _label(case, name: str):
    if name not in case.labels:
        known = ", ".join(sorted(case.labels)) or "none"
        raise InputError(f"--label {name}: no such label in the case (labels: {known})")
    return case.labels[name]


def _op_grow(case, args) -> tuple:
    from imaging.segment import presets_for
    from imaging.segment_tools import region_grow

    seeds = _need(args, "--seed", "grow")
    vol_name, volume = case.primary_volume()
    hu = args.hu
    if hu is None and args.preset:
        presets = presets_for(volume)
        if args.preset not in presets:
            raise InputError(f"--preset {args.preset}: unknown preset (choose from {', '.join(sorted(presets))})")
        hu = presets[args.preset]
    params = {"seed_lps": seeds, "mode": args.mode, "hu_range": list(hu) if hu else None,
              "preset": args.preset, "multiplier": args.multiplier, "iterations": args.iterations,
              "radius_vox": args.radius_vox}
    out = region_grow(volume, seeds, mode=args.mode, hu_range=hu, multiplier=args.multiplier,
                      iterations=args.iterations, radius_vox=args.radius_vox, name=args.out_label or args.label)
    seed_hu = [volume.value_at_lps(s) for s in seeds]
    return out, params, [case.input_ref("volume", vol_name)], {"mode": args.mode, "seed_hu": seed_hu}


def _op_islands(case, args) -> tuple:
    from imaging.segment_tools import island_sizes, keep_islands, remove_islands

    lab = _label(case, args.label)
    fn = remove_islands if args.remove else keep_islands
    params = {"islands": args.islands, "remove": args.remove, "min_size_mm3": args.min_size_mm3,
              "seed_lps": args.seed, "count": args.count}
    out = fn(lab, args.islands, min_size_mm3=args.min_size_mm3, seed_lps=args.seed, count=args.count)
    extras = {"islands_before": int(island_sizes(lab).size), "islands_after": int(island_sizes(out).size)}
    return out, params, [case.input_ref("label", args.label)], extras


def _op_paint(case, args, erase: bool) -> tuple:
    from imaging.segment_tools import paint_disk, paint_sphere
    from imaging.volume import LabelInfo, LabelMap, default_color

    centers = _need(args, "--center", "erase" if erase else "paint")
    radius = _need(args, "--radius-mm", "erase" if erase else "paint")
    inputs = []
    if args.label in case.labels or erase:
        lab = _label(case, args.label)
        inputs = [case.input_ref("label", args.label)]
    else:  # painting a new label on the scan's grid
        _name, volume = case.primary_volume()
        lab = LabelMap(np.zeros(volume.array.shape, np.uint8), volume.geometry,
                       {1: LabelInfo(args.label, default_color(args.label))})
    value = 0 if erase else 1
    editable = 1 if erase else None
    for c in centers:
        if args.brush == "sphere":
            lab = paint_sphere(lab, c, radius, value=value, editable=editable)
        else:
            lab = paint_disk(lab, c, radius, axis=args.brush, value=value, editable=editable)
    params = {"centers_lps": centers, "radius_mm": radius, "brush": args.brush}
    return lab, params, inputs, {"strokes": len(centers)}


def _op_morph(case, args) -> tuple:
    from imaging.segment_tools import morphology

    lab = _label(case, args.label)
    op = _need(args, "--morph", "morph")
    radius = _need(args, "--radius-mm", "morph")
    out = morphology(lab, op, radius, shell=args.shell, distance=args.distance)
    params = {"morph": op, "radius_mm": radius, "shell": args.shell, "distance": args.distance}
    return out, params, [case.input_ref("label", args.label)], {"morph": op}


def _op_fill(case, args) -> tuple:
    from imaging.segment_tools import fill_holes

    lab = _label(case, args.label)
    out = fill_holes(lab, view=args.fill_view)
    return out, {"view": args.fill_view}, [case.input_ref("label", args.label)], {}


def _op_combine(case, args) -> tuple:
    from imaging.segment_tools import combine

    lab = _label(case, args.label)
    other_name = _need(args, "--with", "combine", "with_")
    if other_name not in case.labels:
        raise InputError(f"--with {other_name}: no such label in the case")
    out = combine(lab, case.labels[other_name], args.logic)
    inputs = [case.input_ref("label", args.label), case.input_ref("label", other_name)]
    return out, {"with": other_name, "logic": args.logic}, inputs, {"with": other_name, "logic": args.logic}


def _op_scissors(case, args) -> tuple:
    from imaging.segment_tools import orthographic_view_matrix, scissors

    lab = _label(case, args.label)
    coords = _need(args, "--polygon", "scissors")
    if len(coords) % 3 or len(coords) < 9:
        raise InputError("--polygon: give at least three points as X Y Z triples (LPS mm)")
    view = orthographic_view_matrix(args.view)
    pts = np.asarray(coords, float).reshape(-1, 3)
    display = (np.c_[pts, np.ones(len(pts))] @ view.T)[:, :2]
    mode = "outside" if args.outside else "inside"
    out = scissors(lab, display, view, mode=mode, erase=not args.fill)
    params = {"polygon_lps": pts.tolist(), "view": args.view, "mode": mode, "erase": not args.fill}
    return out, params, [case.input_ref("label", args.label)], {"view": args.view, "mode": mode}


def cmd_edit(args) -> int:
    from app.case import Provenance
    from app.project import load_case, save_case
    from imaging.segment_common import label_stats
    from imaging.volume import LabelInfo

    t0 = time.perf_counter()
    case = load_case(args.case)
    target = args.out_label or args.label
    if not target.strip():
        raise InputError("--label: a label name is required")
    if args.op == "split":
        return _split(case, args, t0)
    handlers: dict[str, Callable] = {
        "grow": _op_grow, "islands": _op_islands, "morph": _op_morph, "fill": _op_fill,
        "combine": _op_combine, "scissors": _op_scissors,
        "paint": lambda c, a: _op_paint(c, a, False), "erase": lambda c, a: _op_paint(c, a, True),
    }
    # What "changed" compares with: the label stored under the target name,
    # else the edited label (a new --out-label), else nothing (grow, new paint).
    before = case.labels.get(target)
    if before is None and args.op != "grow":
        before = case.labels.get(args.label)
    out, params, inputs, extras = handlers[args.op](case, args)
    if before is not None and before.array.shape != out.array.shape:
        before = None
    out.labels = {v: LabelInfo(target, i.color) if v == 1 else i for v, i in out.labels.items()}
    params = dict(params, label=args.label, out_label=target)
    case.set_item("label", target, out, Provenance(f"edit_{args.op}", params, inputs))
    save_case(case, args.case)
    stats = label_stats(out, 1, before.array if before is not None else np.zeros_like(out.array))
    data = {"label": target, "op": args.op, **stats, "seconds": round(time.perf_counter() - t0, 4), **extras}
    emit(data, args.json, [f"{args.op} {target}: {data['voxels']} voxels, {data['volume_mm3'] / 1000:.2f} ml, "
                           f"{data['changed_voxels']} voxels changed"])
    return 0


def _split(case, args, t0: float) -> int:
    from app.case import Provenance
    from app.project import save_case
    from imaging.segment_common import label_stats
    from imaging.segment_tools import split_by_plane

    lab = _label(case, args.label)
    point = _need(args, "--plane-point", "split")
    normal = _need(args, "--plane-normal", "split")
    names = args.out_labels or [f"{args.label}_a", f"{args.label}_b"]
    if args.label in names:
        raise InputError(f"--out-labels: the parts must not replace --label {args.label}")
    a, b = split_by_plane(lab, point, normal, kerf_mm=args.kerf_mm, names=names)
    params = {"label": args.label, "plane_point_lps": point, "plane_normal_lps": normal,
              "kerf_mm": args.kerf_mm, "out_labels": names}
    ref = case.input_ref("label", args.label)
    parts = []
    for name, part in zip(names, (a, b)):
        case.set_item("label", name, part, Provenance("edit_split", dict(params, side=len(parts)), [ref]))
        parts.append({"label": name, **label_stats(part)})
    save_case(case, args.case)
    stats = label_stats(lab)
    kerf = stats["voxels"] - sum(p["voxels"] for p in parts)
    data = {"label": args.label, "op": "split", **stats, "changed_voxels": kerf,
            "seconds": round(time.perf_counter() - t0, 4), "parts": parts, "kerf_voxels": kerf}
    emit(data, args.json, [f"split {args.label}: " + ", ".join(
        f"{p['label']} {p['voxels']} voxels" for p in parts) + f", kerf {kerf} voxels"])
    return 0


def register(subparsers) -> None:
    """Add the ``edit`` subcommand to the ``twinplan`` parser."""
    from imaging.segment import HU_PRESETS
    from imaging.segment_morphology import DISTANCES, MORPH_OPS, SHELLS
    from imaging.segment_tools import GROW_MODES, ISLAND_MODES, LOGIC_OPS

    xyz = {"nargs": 3, "type": float, "metavar": ("X", "Y", "Z")}
    s = subparsers.add_parser(
        "edit", help="edit a label: grow, islands, paint, erase, morph, fill, combine, split, scissors",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("case")
    s.add_argument("--label", required=True, help="label edited (grow/paint: created if absent)")
    s.add_argument("--op", required=True, choices=OPS)
    s.add_argument("--out-label", help="store the result under this name instead of replacing --label")
    s.add_argument("--json", action="store_true")
    g = s.add_argument_group("grow")
    g.add_argument("--seed", action="append", help="seed point, LPS mm (repeatable; also picks islands)", **xyz)
    g.add_argument("--hu", nargs=2, type=float, metavar=("LO", "HI"), help="HU range")
    g.add_argument("--preset", choices=sorted(HU_PRESETS), help="HU range preset instead of --hu")
    g.add_argument("--mode", choices=GROW_MODES, default="connected")
    g.add_argument("--multiplier", type=float, default=2.5, help="confidence: standard deviations")
    g.add_argument("--iterations", type=int, default=4, help="confidence: re-estimations")
    g.add_argument("--radius-vox", type=int, default=1, help="confidence: initial neighbourhood, voxels")
    g = s.add_argument_group("islands")
    g.add_argument("--islands", choices=ISLAND_MODES, default="largest")
    g.add_argument("--remove", action="store_true", help="remove the selected islands instead of keeping them")
    g.add_argument("--min-size-mm3", type=float, default=0.0)
    g.add_argument("--count", type=int, default=1, help="largest: how many islands")
    g = s.add_argument_group("paint / erase / morph")
    g.add_argument("--center", action="append", help="brush centre, LPS mm (repeatable: one stroke each)", **xyz)
    g.add_argument("--radius-mm", type=float, help="brush radius; morph radius (margin: signed; hollow: wall)")
    g.add_argument("--brush", choices=("sphere", "axial", "coronal", "sagittal"), default="sphere",
                   help="3D sphere or a 2D disk in one slice of a view")
    g.add_argument("--morph", choices=MORPH_OPS)
    g.add_argument("--shell", choices=SHELLS, default="inside", help="hollow: wall side")
    g.add_argument("--distance", choices=DISTANCES, default="solid",
                   help="morph: distance to the label's voxel solid or to voxel centres")
    g.add_argument("--fill-view", choices=("axial", "coronal", "sagittal"),
                   help="fill: holes within each slice of this view (default: enclosed in 3D)")
    g = s.add_argument_group("combine / split / scissors")
    g.add_argument("--with", dest="with_", metavar="OTHER", help="second label")
    g.add_argument("--logic", choices=LOGIC_OPS, default="union")
    g.add_argument("--plane-point", help="point of the cut plane, LPS mm", **xyz)
    g.add_argument("--plane-normal", nargs=3, type=float, metavar=("NX", "NY", "NZ"), help="normal (LPS)")
    g.add_argument("--kerf-mm", type=float, default=0.0, help="saw cut width removed between the parts")
    g.add_argument("--out-labels", nargs=2, metavar=("A", "B"), help="split parts (A: the normal's side)")
    g.add_argument("--polygon", nargs="+", type=float, help="scissors: X Y Z triples, LPS mm, seen along --view")
    g.add_argument("--view", choices=("axial", "coronal", "sagittal"), default="axial")
    g.add_argument("--outside", action="store_true", help="scissors: act outside the polygon")
    g.add_argument("--fill", action="store_true", help="scissors: fill the selection instead of erasing it")
    s.set_defaults(func=cmd_edit)
