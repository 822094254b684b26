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
from typing import Optional

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


def _source_series(case, volume_name: str, option: str):
    """(scan, series) of the original DICOM series of a volume, or (None, None).

    ``auto`` uses the folder recorded at import when it still holds the
    series; a path is scanned for that series, else its largest one.
    """
    from imaging.dicom import scan_dicom_folder
    from imaging.errors import InputError

    if option == "none":
        return None, None
    prov = case.provenance.get(f"volume/{volume_name}")
    imported = prov is not None and prov.operation == "import_dicom"
    uid = prov.params.get("series_uid") if imported else None
    if option == "auto":
        path = prov.params.get("path") if imported else None
        if not path or not Path(path).exists():
            return None, None
    else:
        path = option
        if not Path(path).exists():
            raise InputError(f"--source {path}: no such file or folder")
    scan = scan_dicom_folder(path)
    if uid and any(s.series_uid == uid for s in scan.series):
        return scan, scan.find(uid)
    if option == "auto" or not scan.series:
        return None, None
    return scan, scan.find()


def _label_volume(case, label: str) -> Optional[str]:
    """The case volume a label lies on: its provenance input first, else any volume on the same grid."""
    lab = case.labels[label]
    prov = case.provenance.get(f"label/{label}")
    names = [i["id"].split("/", 1)[1] for i in (prov.inputs if prov else []) if i.get("id", "").startswith("volume/")]
    for name in names + [n for n in case.volumes if n not in names]:
        vol = case.volumes.get(name)
        if vol is not None and vol.array.shape == lab.array.shape and vol.geometry.same_grid(lab.geometry, 1e-3):
            return name
    return None


def _known(kind: str, names) -> str:
    return f"({kind}: {', '.join(names) or 'none'})"


def cmd_export(args) -> int:
    from app.cli import TerminalProgress, emit
    from app.project import load_case
    from imaging.errors import InputError
    from imaging.export import FILE_SUFFIXES, export_dicom_seg, export_dicom_series, export_image_file, file_format_of

    case = load_case(args.case)
    fmt, out = args.format, Path(args.out)
    deidentify = args.deidentify if args.deidentify is not None else fmt in ("dicom", "seg")
    if args.volume is not None:
        if fmt == "seg":
            raise InputError("--format seg exports a label: use --label NAME")
        if args.volume not in case.volumes:
            raise InputError(f"--volume {args.volume}: no such volume in the case {_known('volumes', case.volumes)}")
        kind, name, item = "volume", args.volume, case.volumes[args.volume]
    else:
        if fmt == "dicom":
            raise InputError("--format dicom exports a volume as CT images: use --format seg for a label")
        if args.label not in case.labels:
            raise InputError(f"--label {args.label}: no such label in the case {_known('labels', case.labels)}")
        kind, name, item = "label", args.label, case.labels[args.label]
    ctx = _context(args) if deidentify and fmt in ("dicom", "seg") else None
    bar = TerminalProgress()
    scan = series = None  # the scan keeps an extracted zip source alive until the export is written
    if fmt in ("nrrd", "nifti"):
        if file_format_of(out) != fmt:
            raise InputError(f"--out {out}: a {fmt} file name ends with {' or '.join(FILE_SUFFIXES[fmt])}")
        result = export_image_file(item, out)
        result.deidentified = deidentify  # these headers hold geometry only: nothing to remove
    elif fmt == "dicom":
        scan, series = _source_series(case, name, args.source)
        result = export_dicom_series(item, out, source=series, deidentify=ctx, progress=bar)
    else:
        vol_name = _label_volume(case, name)
        if vol_name is None:
            raise InputError(f"--label {name}: no volume of the case lies on the label's grid")
        scan, series = _source_series(case, vol_name, args.source)
        result = export_dicom_seg(item, out, volume=case.volumes[vol_name], source=series, deidentify=ctx,
                                  progress=bar)
    bar.done()
    data = dict(result.to_json(), item=f"{kind}/{name}", out=str(out), study_from_source=series is not None)
    what = f"{len(result.files)} file(s)" if fmt in ("dicom", "seg") else fmt
    lines = [f"exported {kind} {name} as {what} to {out}" + (" (de-identified)" if result.deidentified else "")]
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
