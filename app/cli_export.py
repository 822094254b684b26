"""`twinplan export` and `twinplan deidentify` (registered by app.cli; no Qt).

``export`` writes one volume or label of a case as NRRD, NIfTI, a DICOM CT
series or a DICOM SEG. DICOM output is de-identified by default (PS3.15
basic profile, dates shifted); ``--no-deidentify`` keeps the identity of the
source series. ``deidentify`` copies a raw DICOM folder de-identified.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

FORMATS = ("nrrd", "nifti", "dicom", "seg")
KEY_BYTES = 32


def register(subparsers) -> None:
    """Add the ``export`` and ``deidentify`` subcommands."""
    s = subparsers.add_parser("export", help="export a volume or label (NRRD, NIfTI, DICOM CT, DICOM SEG)")
    s.add_argument("case", help="project folder CASE.twin")
    item = s.add_mutually_exclusive_group(required=True)
    item.add_argument("--volume", metavar="NAME", help="volume to export (nrrd, nifti, dicom)")
    item.add_argument("--label", metavar="NAME", help="label to export (nrrd, nifti, seg)")
    s.add_argument("--format", required=True, choices=FORMATS)
    s.add_argument("--out", required=True, help="FILE.nrrd / FILE.nii.gz, or a new folder for dicom and seg")
    s.add_argument("--deidentify", dest="deidentify", action="store_true", default=None,
                   help="de-identify the output (default for dicom and seg)")
    s.add_argument("--no-deidentify", dest="deidentify", action="store_false",
                   help="keep the patient and study identity of the source series")
    s.add_argument("--source", default="auto",
                   help="DICOM folder of the original series, giving the study attributes (and the files a SEG "
                        "references): 'auto' = the folder the case was imported from if still there, or 'none'")
    _add_deid_options(s)
    s.set_defaults(func=cmd_export)

    s = subparsers.add_parser("deidentify", help="de-identify a DICOM folder into a new folder (PS3.15 basic profile)")
    s.add_argument("src", help="DICOM folder (searched recursively) or file")
    s.add_argument("--out", required=True, help="new output folder")
    _add_deid_options(s)
    s.set_defaults(func=cmd_deidentify)


def _add_deid_options(s) -> None:
    s.add_argument("--allow-burned-in", action="store_true",
                   help="export images flagged with burned-in annotation (with a warning) instead of refusing")
    s.add_argument("--key-file", metavar="FILE",
                   help="secret key for UID, pseudonym and date-shift mapping; the same key maps the same input "
                        "the same way across exports (created with a random key if missing)")
    s.add_argument("--json", action="store_true")


def _context(args):
    """The de-identification context of this run (key from --key-file or random)."""
    from imaging.deidentify import DeidentifyContext
    from imaging.errors import InputError

    if not args.key_file:
        return DeidentifyContext(allow_burned_in=args.allow_burned_in)
    path = Path(args.key_file)
    try:
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(KEY_BYTES))
        key = path.read_bytes()
    except OSError as exc:
        raise InputError(f"--key-file {path}: {exc.strerror}") from exc
    if len(key) < 16:
        raise InputError(f"--key-file {path}: a key needs at least 16 bytes")
    return DeidentifyContext(key=key, allow_burned_in=args.allow_burned_in)


def cmd_export(args) -> int:
    from app.cli import TerminalProgress, emit
    from app.exporting import export_item
    from app.project import load_case

    case = load_case(args.case)
    deidentify = args.deidentify if args.deidentify is not None else args.format in ("dicom", "seg")
    kind, name = ("volume", args.volume) if args.volume is not None else ("label", args.label)
    ctx = _context(args) if deidentify and args.format in ("dicom", "seg") else None
    bar = TerminalProgress()
    result = export_item(case, kind, name, args.format, Path(args.out), deidentify=deidentify, context=ctx,
                         source=args.source, progress=bar)
    bar.done()
    data = result.to_json()
    lines = [f"exported {kind} {name} as {data['what']} to {args.out}" + (" (de-identified)" if result.deidentified else "")]
    lines += [f"    segment {s['number']}: {s['label']} ({s['voxels']} voxels)" for s in result.segments]
    lines += [f"    warning: {w}" for w in result.warnings]
    emit(data, args.json, lines)
    return 0


def cmd_deidentify(args) -> int:
    from app.cli import TerminalProgress, emit
    from imaging.deidentify import deidentify_folder

    bar = TerminalProgress()
    report = deidentify_folder(args.src, args.out, ctx=_context(args), progress=bar)
    bar.done()
    data = report.to_json()
    lines = [f"de-identified {data['n_files']} file(s) in {len(data['series'])} series into {args.out}"]
    if report.skipped:
        lines.append(f"skipped {len(report.skipped)} file(s):")
        lines += [f"    {k['path']}: {k['reason']}" for k in report.skipped[:20]]
    lines += [f"    warning: {w}" for w in report.warnings]
    emit(data, args.json, lines)
    return 0
