"""`twinplan report` (PDF/HTML case report) and `twinplan rehearse` (scenario video), no Qt."""
from __future__ import annotations

import time

from app.cli import TerminalProgress, emit


def cmd_report(args) -> int:
    from app.project import load_case
    from app.report import build_report
    from app.report_output import REPORT_SUFFIXES, write_report
    from imaging.errors import InputError

    if not args.out.lower().endswith(REPORT_SUFFIXES):
        raise InputError(f"--out {args.out}: use a .pdf or .html file name")
    t0 = time.perf_counter()
    case = load_case(args.case)
    bar = TerminalProgress()
    model = build_report(case, identified=args.identified, views=not args.no_views,
                         progress=lambda f, m: bar(0.9 * f, m))
    written = write_report(model, args.out)
    bar(1.0, "Report written")
    bar.done()
    data = dict(written, identified=args.identified, scenarios=model.meta["scenarios"],
                sections=[s.title for s in model.sections], figures=model.meta["figures"],
                tables=model.meta["tables"], build_seconds=model.meta["build_seconds"],
                seconds=round(time.perf_counter() - t0, 3))
    pages = f", {data['pages']} pages" if data["pages"] else ""
    emit(data, args.json, [f"{data['file']}: {data['format'].upper()} report{pages}, {data['figures']} figures, "
                           f"{data['tables']} tables, {len(data['scenarios'])} scenario(s), "
                           f"{'identified' if args.identified else 'de-identified'} ({data['seconds']:.1f} s)"])
    return 0


def cmd_rehearse(args) -> int:
    from app.project import load_case
    from app.rehearsal import build_rehearsal
    from app.rehearsal_video import VIDEO_SUFFIXES, export_video
    from imaging.errors import InputError

    if not args.out.lower().endswith(VIDEO_SUFFIXES):
        raise InputError(f"--out {args.out}: use a .mp4 or .gif file name")
    case = load_case(args.case)
    bar = TerminalProgress()
    reh = build_rehearsal(case, args.scenario, frames_per_step=args.frames_per_step, move_frames=args.move_frames,
                          progress=lambda f, m: bar(0.1 * f, m))
    size = tuple(int(v) for v in args.size.lower().split("x"))
    data = export_video(reh, args.out, fps=args.fps, size=size, progress=lambda f, m: bar(0.1 + 0.9 * f, m))
    bar.done()
    data["scenario"] = args.scenario
    emit(data, args.json, [f"{data['file']}: {data['frames']} frames, {data['duration_s']:.1f} s at {data['fps']} fps "
                           f"({data['seconds']:.1f} s to render)"]
         + [f"    {s['title']}: {s['frames']} frames" for s in data["steps"]])
    return 0


def _size(text: str) -> str:
    import argparse

    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and 16 <= int(p) <= 4096 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT in pixels, e.g. 640x480")
    return text


def register(sub) -> None:
    s = sub.add_parser("report", help="write the case report (PDF or self-contained HTML), de-identified by default")
    s.add_argument("case")
    s.add_argument("--out", required=True, help="report.pdf | report.html")
    s.add_argument("--identified", action="store_true",
                   help="include the patient name, ID and birth date read from the source (default: none)")
    s.add_argument("--no-views", action="store_true", help="skip the offscreen 3D views of the scenarios")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("rehearse", help="play a scenario step by step into a video (mp4 or animated GIF)")
    s.add_argument("case")
    s.add_argument("--scenario", required=True, help="scenario name (a soft-tissue plan result counts as one)")
    s.add_argument("--out", required=True, help="FILE.mp4 | FILE.gif")
    s.add_argument("--fps", type=int, default=8, help="frames per second (default 8)")
    s.add_argument("--frames-per-step", type=int, default=8, help="frames for each still step (default 8)")
    s.add_argument("--move-frames", type=int, default=16, help="frames interpolating the bone move (default 16)")
    s.add_argument("--size", type=_size, default="640x480", help="frame size WIDTHxHEIGHT (default 640x480)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_rehearse)
