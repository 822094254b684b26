"""`twinplan centerline` and `twinplan ffr`: vessel centerlines and virtual FFR without a GUI (no Qt)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from app.cli import TerminalProgress, emit
from mechanics.reduced import DEFAULT_STENOSIS_MODEL, STENOSIS_MODELS

LUMEN_NAMES = ("lumen", "vessel")
STENT_KEYS = {"lesion": int, "length": float, "diameter": float}
LUMEN_RULE = ("For a CASE.twin the lumen is the surface named 'lumen' or 'vessel', else the first surface whose "
              "name contains 'lumen', 'vessel', 'coronary' or 'aorta', else the largest surface (by area).")


def pick_case_surface(surfaces: dict):
    """(name, surface) of the lumen among a case's surfaces (rule: ``LUMEN_RULE``)."""
    from imaging.errors import InputError

    if not surfaces:
        raise InputError("the case has no surface: add a lumen surface (e.g. twinplan mesh) first")
    for name in LUMEN_NAMES:
        if name in surfaces:
            return name, surfaces[name]
    for key in ("lumen", "vessel", "coronary", "aorta"):
        for name in sorted(surfaces):
            if key in name.lower():
                return name, surfaces[name]
    name = max(surfaces, key=lambda n: surfaces[n].area)
    return name, surfaces[name]


def load_input_lumen(path: str, caps=None, inlet=None):
    """Lumen from a CASE.twin or a surface file; returns (Lumen, description)."""
    from imaging.errors import InputError
    from imaging.vessels import SURFACE_SUFFIXES, load_lumen, lumen_from_surface

    p = Path(path)
    if p.suffix.lower() in SURFACE_SUFFIXES:
        return load_lumen(p, caps=caps, inlet=inlet), p.name
    if p.is_dir() or p.suffix.lower() == ".twin":
        from app.project import load_case

        name, surface = pick_case_surface(load_case(p).surfaces)
        caps_meshes = None
        if caps:
            from imaging.vessels import read_surface

            caps_meshes = [read_surface(c) for c in caps]
        return lumen_from_surface(surface, caps_meshes, inlet), f"surface {name}"
    raise InputError(f"{path}: give a CASE.twin or a lumen surface ({', '.join(SURFACE_SUFFIXES)})")


def cmd_centerline(args) -> int:
    from imaging.centerline import extract_centerlines
    from imaging.errors import InputError

    out = Path(args.out)
    if out.suffix.lower() != ".vtp":
        raise InputError(f"--out {out}: use a .vtp file name")
    t0 = time.perf_counter()
    lumen, what = load_input_lumen(args.lumen, args.caps, args.inlet)
    bar = TerminalProgress()
    tree = extract_centerlines(lumen, step_mm=args.step_mm, progress=bar)
    bar.done()
    tree.to_polydata().save(str(out))
    seconds = time.perf_counter() - t0
    data = {"n_branches": len(tree.branches), "length_mm": tree.length_mm, "seconds": seconds, "file": str(out),
            "lumen": what, "port_detection": lumen.port_method, "ports": [p.to_json() for p in lumen.ports],
            "radius_mm": {"min": float(min(b.radius_mm.min() for b in tree.branches)),
                          "max": float(max(b.radius_mm.max() for b in tree.branches))}}
    emit(data, args.json, [f"{out}: {data['n_branches']} branches, {data['length_mm']:.1f} mm of centerline, "
                           f"{len(lumen.outlets)} outlets ({lumen.port_method}), {seconds:.1f} s"])
    return 0


def parse_spec(text: str, option: str, keys: dict) -> dict:
    """``key=value,key=value`` into typed values; InputError naming the option on a bad item."""
    from imaging.errors import InputError

    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in keys:
            raise InputError(f"{option} {text!r}: expected {', '.join(f'{k}=...' for k in keys)}")
        try:
            out[key] = keys[key](value)
        except ValueError:
            raise InputError(f"{option} {text!r}: bad value for {key}: {value!r}") from None
    return out


def _stented(tree, lesions, specs):
    """Apply the --stent specs; returns the stented tree and a description per stent."""
    from imaging.errors import InputError
    from imaging.lesions import apply_stent

    done = []
    for spec in specs:
        if spec.strip() == "auto":
            chosen = [(i, {}) for i in range(len(lesions))]
        else:
            d = parse_spec(spec, "--stent", STENT_KEYS)
            if "lesion" not in d:
                raise InputError(f"--stent {spec!r}: name the lesion (lesion=N, 1 = most severe) or use 'auto'")
            if not 1 <= d["lesion"] <= len(lesions):
                raise InputError(f"--stent {spec!r}: lesion {d['lesion']} does not exist "
                                 f"({len(lesions)} lesion(s) found)")
            chosen = [(d["lesion"] - 1, d)]
        for i, d in chosen:
            tree = apply_stent(tree, lesions[i], d.get("length"), d.get("diameter"))
            done.append({"lesion": i + 1, "branch": lesions[i].branch, "length_mm": d.get("length"),
                         "diameter_mm": d.get("diameter")})
    return tree, done


def _jsonable(obj):
    """Plain JSON types from a solver report (numpy scalars and arrays, nested containers)."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj if isinstance(obj, (str, int, float, bool, type(None))) else str(obj)


def cmd_ffr(args) -> int:
    from imaging.centerline import extract_centerlines
    from imaging.lesions import detect_lesions, introduce_lesion
    from mechanics.reduced import solve_ffr_1d

    from imaging.errors import InputError

    t0 = time.perf_counter()
    specs = []  # check the option syntax before the work
    for spec in args.lesion or []:
        d = parse_spec(spec, "--lesion", {"branch": int, "position": float, "severity": float, "length": float})
        missing = {"branch", "position", "severity", "length"} - set(d)
        if missing:
            raise InputError(f"--lesion {spec!r}: missing {', '.join(sorted(missing))}")
        specs.append(d)
    for spec in args.stent or []:
        if spec.strip() != "auto" and "lesion" not in parse_spec(spec, "--stent", STENT_KEYS):
            raise InputError(f"--stent {spec!r}: name the lesion (lesion=N, 1 = most severe) or use 'auto'")
    lumen, what = load_input_lumen(args.lumen, args.caps, args.inlet)
    bar = TerminalProgress()
    tree = extract_centerlines(lumen, progress=lambda f, m: bar(0.5 * f, m))
    surface = lumen.surface
    scenario = []
    for d in specs:
        new = introduce_lesion(tree, d["branch"], d["position"], d["severity"], d["length"])
        if args.model == "3d":
            from imaging.lesions import deform_surface

            surface = deform_surface(surface, tree, new)
        tree = new
        scenario.append(dict(d, introduced=True))
    lesions = detect_lesions(tree, min_stenosis=args.min_stenosis)
    for les in lesions:  # a lesion we made is a scenario, not a finding
        les.introduced = any(d["branch"] == les.branch and abs(d["position"] - les.throat_mm) <= d["length"] / 2
                             for d in scenario)
    base = solve_ffr_1d(tree, lesions=lesions, stenosis_model=args.stenosis_model)
    plan_tree, stents = _stented(tree, lesions, args.stent or [])
    result = base if not stents else solve_ffr_1d(plan_tree, lesions=detect_lesions(
        plan_tree, min_stenosis=args.min_stenosis), stenosis_model=args.stenosis_model)
    data = {"model": args.model, "lumen": what, "n_branches": len(tree.branches),
            "introduced_lesions": scenario, "stents": stents}
    if args.model == "3d":
        try:
            from mechanics.flow import solve_ffr_3d
        except ModuleNotFoundError as exc:
            sys.stderr.write(f"twinplan ffr: --model 3d needs mechanics.flow, which is not available ({exc})\n")
            return 2
        if stents:
            from imaging.lesions import deform_surface

            surface = deform_surface(surface, tree, plan_tree)
        res3 = solve_ffr_3d(surface, lumen.ports, centerlines=plan_tree.to_polydata(), mesh_size_mm=args.mesh_mm,
                            progress=lambda f, m: bar(0.5 + 0.5 * f, m))
        data.update(ffr_min=float(res3.ffr_min), per_outlet={k: float(v) for k, v in res3.per_outlet.items()},
                    dofs=int(res3.dofs), solver=_jsonable(res3.report), ffr_min_1d=result.ffr_min,
                    per_outlet_1d=result.per_outlet)
    else:
        data.update(ffr_min=result.ffr_min, per_outlet=result.per_outlet, dofs=result.dofs,
                    solver={k: v for k, v in result.report.items() if k != "physiology"})
    bar.done()
    data["lesions"] = base.lesions
    if stents:
        data["baseline"] = {"ffr_min": base.ffr_min, "per_outlet": base.per_outlet}
    data["seconds"] = time.perf_counter() - t0
    lines = [f"{what}: FFR min {data['ffr_min']:.3f} ({args.model}{', stented' if stents else ''}), "
             f"{len(base.lesions)} lesion(s), {data['seconds']:.1f} s"]
    lines += [f"    {k}: {v:.3f}" for k, v in data["per_outlet"].items()]
    lines += [f"    lesion {i + 1}: branch {les['branch']}, {les['diameter_stenosis_pct']:.0f} % diameter, "
              f"{les['length_mm']:.1f} mm, delta FFR {les['delta_ffr']:.3f}" for i, les in enumerate(base.lesions)]
    emit(data, args.json, lines)
    return 0


def _add_lumen_args(s) -> None:
    s.add_argument("lumen", help="CASE.twin or lumen surface (.stl/.vtp/...), open at its ends or capped. "
                   + LUMEN_RULE)
    s.add_argument("--caps", nargs="+", metavar="CAP", help="cap surfaces (one per port, vertices shared with the "
                   "lumen); without them open ends, flat caps or rounded ends are detected")
    s.add_argument("--inlet", type=int, help="index of the inlet among the ports (default: the largest port)")
    s.add_argument("--json", action="store_true")


def register(sub) -> None:
    s = sub.add_parser("centerline", help="centerlines with radius of a vessel lumen (writes polylines, Radius in mm)")
    _add_lumen_args(s)
    s.add_argument("--out", required=True, help="FILE.vtp: polylines in the lumen's coordinates, point array Radius")
    s.add_argument("--step-mm", type=float, help="point spacing (default: a quarter of the smallest port radius)")
    s.set_defaults(func=cmd_centerline)

    s = sub.add_parser("ffr", help="virtual FFR of a vessel lumen (1D instant model or 3D Navier-Stokes)")
    _add_lumen_args(s)
    s.add_argument("--model", choices=("1d", "3d"), default="1d", help="1d (default, instant) or 3d")
    s.add_argument("--stent", action="append", metavar="SPEC",
                   help="virtual stent: 'auto' (every detected lesion, lesion length + 4 mm, reference diameter) or "
                        "'lesion=N[,length=MM][,diameter=MM]' (N = row of the lesion table, 1 = most severe); "
                        "repeatable")
    s.add_argument("--lesion", action="append", metavar="SPEC",
                   help="SCENARIO, not a finding: narrow the lumen first, "
                        "'branch=B,position=MM,severity=0.7,length=MM' (cosine lesion, severity = diameter "
                        "stenosis fraction, position = arc length from the branch start); repeatable")
    s.add_argument("--mesh-mm", type=float, help="3D: uniform element size in mm (default: sized by the radius)")
    s.add_argument("--min-stenosis", type=float, default=0.3,
                   help="lesion detection threshold, fractional diameter stenosis (default 0.3)")
    s.add_argument("--stenosis-model", choices=STENOSIS_MODELS, default=DEFAULT_STENOSIS_MODEL,
                   help=f"1D stenosis loss model (default {DEFAULT_STENOSIS_MODEL})")
    s.set_defaults(func=cmd_ffr)
