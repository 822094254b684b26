"""`twinplan history | replay | prov | followup`: the digital thread from the command line (no Qt)."""
from __future__ import annotations

import json
from pathlib import Path

from app.cli import TerminalProgress, emit


def cmd_history(args) -> int:
    from app.project import load_case
    from app.thread import build_thread, format_history, history_json

    thread = build_thread(load_case(args.case))
    emit(history_json(thread), args.json, format_history(thread))
    return 0


def cmd_replay(args) -> int:
    from app.project import load_case, save_case
    from app.replay import replay_case
    from imaging.errors import InputError

    if Path(args.out).resolve() == Path(args.case).resolve():
        raise InputError(f"--out {args.out}: must differ from the case replayed")
    case = load_case(args.case)
    bar = TerminalProgress()
    new, report = replay_case(case, progress=bar)
    bar.done()
    written = save_case(new, args.out)
    data = report.to_json()
    data["out"] = str(written)
    lines = [f"{i['id']:<40} {i['operation']:<26} "
             + ("identical" if i["identical"] else
                f"max diff {i['max_abs_diff']}" + (" (within tolerance)" if i["within_tolerance"] else " DIFFERS"))
             for i in data["items"]]
    lines += [f"{n:<40} not replayed (no recorded operation to recompute it)" for n in data["not_replayed"]]
    lines.append(f"{data['identical']} of {len(data['items'])} items bit-identical, "
                 f"{len(data['differing'])} differing; replay {data['seconds']:.1f} s; saved {written}")
    emit(data, args.json, lines)
    return 1 if args.strict and (data["differing"] or data["not_replayed"]) else 0


def cmd_prov(args) -> int:
    from app.project import load_case
    from app.thread import export_prov_json, validate_prov_json
    from imaging.errors import InputError

    doc = export_prov_json(load_case(args.case))
    problems = validate_prov_json(doc)
    if problems:  # a bug of ours, not of the input: say it plainly
        raise InputError(f"{args.case}: PROV export failed validation: {problems[0]}")
    out = Path(args.out)
    try:
        out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write ({exc.strerror})") from exc
    data = {"out": str(out), **{k: len(doc[k]) for k in ("entity", "activity", "agent", "used", "wasGeneratedBy",
                                                          "wasAssociatedWith", "wasDerivedFrom")}}
    emit(data, args.json, [f"wrote {out}: {data['entity']} entities, {data['activity']} activities, "
                           f"{data['agent']} agents"])
    return 0


def cmd_followup(args) -> int:
    from app.followup import FollowupRequest, run_followup
    from app.project import load_case, save_case
    from imaging.errors import InputError

    if Path(args.out).resolve() == Path(args.case).resolve():
        raise InputError(f"--out {args.out}: must differ from the baseline case")
    case = load_case(args.case)
    request = FollowupRequest(scan=args.scan, prediction=args.prediction, name=args.name,
                              sampling_fraction=args.sampling, landmarks_file=args.landmarks)
    bar = TerminalProgress()
    result = run_followup(case, request, progress=bar)
    bar.done()
    written = save_case(case, args.out)
    data = dict(result, out=str(written))
    d = data["distance"]
    lines = [f"registered follow-up -> baseline: rotation {data['registration']['rotation_deg']:.2f} deg, "
             f"translation {data['registration']['translation_mm']} mm, MI {data['registration']['metric']:.4f}",
             f"prediction {data['prediction']} vs follow-up skin: median |d| {d['median_abs_mm']:.2f} mm, "
             f"p95 {d['p95_abs_mm']:.2f} mm, max {d['max_abs_mm']:.2f} mm "
             f"(no-change baseline: median {data['no_change']['median_abs_mm']:.2f} mm)"]
    lines += [f"    {n}: {v['error_mm']:.2f} mm" for n, v in data["landmarks"].items()]
    lines.append(f"saved {written}")
    emit(data, args.json, lines)
    return 0


def register(sub) -> None:
    """Add ``history``, ``replay``, ``prov`` and ``followup``."""
    s = sub.add_parser("history", help="print the digital thread (provenance graph) of a case")
    s.add_argument("case")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_history)

    s = sub.add_parser("replay", help="recompute every item from the raw inputs and compare with the stored case")
    s.add_argument("case")
    s.add_argument("--out", required=True, help="write the replayed case here (NEW.twin)")
    s.add_argument("--strict", action="store_true", help="exit 1 if an item differs or cannot be replayed")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser("prov", help="export the digital thread as W3C PROV-JSON")
    s.add_argument("case")
    s.add_argument("--out", required=True, help="FILE.json")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_prov)

    s = sub.add_parser("followup", help="import a follow-up/post-op scan: register, segment, compare with the plan")
    s.add_argument("case")
    s.add_argument("scan", help="DICOM folder, NIfTI/NRRD file or .inv3 of the follow-up scan")
    s.add_argument("--out", required=True, help="write the updated case here (NEW.twin)")
    s.add_argument("--prediction", help="predicted skin surface compared (default: the case's only prediction)")
    s.add_argument("--name", default="followup", help="prefix of the items added (default followup)")
    s.add_argument("--sampling", type=float, default=0.05, help="registration: fraction of voxels sampled")
    s.add_argument("--landmarks", help="landmarks found on the follow-up scan (TwinPlan CSV or .mrk.json, its frame)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_followup)
