"""`twinplan landmarks`: place, import, export and measure landmarks (no Qt)."""
from __future__ import annotations

from pathlib import Path

from app.cli import emit


def cmd_landmarks(args) -> int:
    from app.project import load_case, save_case
    from imaging.errors import InputError
    from imaging.landmarks import (Landmark, cephalometric_measurements, next_template_landmark, read_csv,
                                   read_slicer_markups, write_csv, write_slicer_markups)

    case = load_case(args.case)
    changed = False
    for path in args.import_ or []:
        marks = read_csv(path) if str(path).lower().endswith(".csv") else read_slicer_markups(path)
        for m in marks:
            case.set_landmark(m)
        changed = True
    for name, x, y, z in args.set or []:
        case.set_landmark(Landmark(name, (float(x), float(y), float(z))))
        changed = True
    for name in args.remove or []:
        if name not in case.landmarks:
            raise InputError(f"--remove {name}: no such landmark")
        case.remove_landmark(name)
        changed = True
    if changed:
        save_case(case, args.case)
    written = None
    if args.export:
        out = Path(args.export)
        marks = list(case.landmarks.values())
        if out.name.lower().endswith(".mrk.json"):
            written = write_slicer_markups(marks, out)
        elif out.suffix.lower() == ".csv":
            written = write_csv(marks, out)
        else:
            raise InputError(f"--export {out}: use a .mrk.json (3D Slicer, RAS) or .csv (LPS) file name")
    nxt = next_template_landmark(case.landmarks)
    data = {"landmarks": {m.name: list(m.position_lps) for m in case.landmarks.values()},
            "measurements": cephalometric_measurements(case.landmarks),
            "next_template_landmark": nxt[0] if nxt else None,
            "exported": str(written) if written else None}
    lines = [f"{n}: {x:.2f}, {y:.2f}, {z:.2f} mm (LPS)" for n, (x, y, z) in data["landmarks"].items()]
    lines += [f"{k}: {v:.2f}" for k, v in data["measurements"].items()]
    if written:
        lines.append(f"exported {len(data['landmarks'])} landmark(s) to {written}")
    emit(data, args.json, lines or ["no landmarks"])
    return 0


def register(sub) -> None:
    s = sub.add_parser("landmarks", help="place, import, export and measure landmarks of a case")
    s.add_argument("case")
    s.add_argument("--set", nargs=4, action="append", metavar=("NAME", "X", "Y", "Z"),
                   help="place a landmark at LPS mm (repeatable)")
    s.add_argument("--remove", action="append", metavar="NAME")
    s.add_argument("--import", dest="import_", action="append", metavar="FILE",
                   help="read a 3D Slicer .mrk.json (RAS or LPS) or a TwinPlan CSV")
    s.add_argument("--export", metavar="FILE", help="FILE.mrk.json (3D Slicer, RAS) or FILE.csv (LPS)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_landmarks)
