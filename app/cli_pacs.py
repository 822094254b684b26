"""`twinplan pacs ...`: verify, query, retrieve from and send to a PACS (no Qt).

Loaded by ``app.cli`` through ``EXTENSIONS``. Network problems arrive as
``InputError`` from ``imaging.pacs`` and leave with exit code 2 and one stderr
line. ``find`` prints patient names and IDs because the user asked the PACS for
them; they are never logged.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from app.cli import TerminalProgress, emit


def _node(args):
    from imaging.pacs import PacsNode

    # pynetdicom logs its own one-line errors too; ours already name the server.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING if args.verbose else logging.CRITICAL + 1)
    return PacsNode(args.host, args.port, args.aet)


def cmd_echo(args) -> int:
    from imaging.pacs import echo

    node = _node(args)
    seconds = echo(node, calling_ae=args.calling_aet, timeout=args.timeout)
    data = {"host": node.host, "port": node.port, "aet": node.ae_title, "ok": True, "seconds": round(seconds, 4)}
    emit(data, args.json, [f"{node}: C-ECHO OK in {seconds * 1000:.1f} ms"])
    return 0


def _study_line(s: dict) -> str:
    modalities = "/".join(s.get("ModalitiesInStudy") or [])
    return (f"{s.get('StudyDate', ''):<8}  {s.get('PatientID', ''):<14} {s.get('PatientName', ''):<22} "
            f"{modalities:<6} {s.get('NumberOfStudyRelatedSeries') or '?':>3} series  "
            f"{s.get('StudyDescription', '')}\n    study {s.get('StudyInstanceUID', '')}")


def _series_line(s: dict) -> str:
    return (f"{s.get('SeriesNumber', ''):>5} {s.get('Modality', ''):<3} "
            f"{s.get('NumberOfSeriesRelatedInstances') or '?':>5} images  {s.get('SeriesDescription', '')}\n"
            f"    series {s.get('SeriesInstanceUID', '')}")


def cmd_find(args) -> int:
    from imaging.pacs import find_series, find_studies

    node = _node(args)
    if args.study:
        series = find_series(node, args.study, calling_ae=args.calling_aet, timeout=args.timeout)
        lines = [_series_line(s) for s in series] or ["no series found"]
        emit({"series": series}, args.json, lines)
        return 0
    studies = find_studies(node, patient_name=args.patient_name, patient_id=args.patient_id,
                           date_from=args.date_from, date_to=args.date_to, modality=args.modality,
                           calling_ae=args.calling_aet, timeout=args.timeout)
    emit({"studies": studies}, args.json, [_study_line(s) for s in studies] or ["no studies found"])
    return 0


def cmd_get(args) -> int:
    from imaging.pacs import get_series, move_series

    node = _node(args)
    bar = TerminalProgress()
    t0 = time.perf_counter()
    if args.move_port:
        files = move_series(node, args.study, args.series, args.out, progress=bar, listen_port=args.move_port,
                            calling_ae=args.calling_aet, timeout=args.timeout)
    else:
        files = get_series(node, args.study, args.series, args.out, progress=bar, calling_ae=args.calling_aet,
                           timeout=args.timeout)
    bar.done()
    seconds = time.perf_counter() - t0
    data = {"files": len(files), "folder": str(args.out), "method": "C-MOVE" if args.move_port else "C-GET",
            "seconds": round(seconds, 3)}
    emit(data, args.json, [f"retrieved {len(files)} file(s) into {args.out} in {seconds:.1f} s ({data['method']})"])
    return 0


def cmd_store(args) -> int:
    from imaging.pacs import store_files

    node = _node(args)
    bar = TerminalProgress()
    report = store_files(node, args.paths, progress=bar, calling_ae=args.calling_aet, timeout=args.timeout)
    bar.done()
    lines = [f"sent {report['stored']} file(s) to {node}; {report['failed']} refused, "
             f"{report['skipped']} not DICOM, {report['uids_filled']} sent with filled-in UIDs"]
    lines += [f"    {f['path']}: {f['reason']}" for f in report["failures"][:20]]
    emit(report, args.json, lines)
    if report["failed"]:
        sys.stderr.write(f"twinplan pacs store: {report['failed']} file(s) refused by {node}\n")
        return 2
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", required=True, help="PACS host name or address")
    p.add_argument("--port", required=True, type=int, help="PACS DICOM port")
    p.add_argument("--aet", required=True, help="AE title of the PACS (called AE)")
    p.add_argument("--calling-aet", default="TWINPLAN", help="our AE title, as configured on the PACS")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer (default 10)")
    p.add_argument("--json", action="store_true")


def register(subparsers) -> None:
    """Add ``pacs echo|find|get|store`` to the ``twinplan`` command line."""
    pacs = subparsers.add_parser("pacs", help="verify, query, retrieve from and send to a PACS (DICOM network)")
    sub = pacs.add_subparsers(dest="pacs_command", required=True, parser_class=type(pacs))

    s = sub.add_parser("echo", help="verify the connection (C-ECHO)")
    _add_common(s)
    s.set_defaults(func=cmd_echo)

    s = sub.add_parser("find", help="search studies (C-FIND), or list the series of --study")
    _add_common(s)
    s.add_argument("--patient-name", help="patient name; wildcards * and ? allowed")
    s.add_argument("--patient-id", help="patient ID; wildcards * and ? allowed")
    s.add_argument("--date-from", help="first study date, YYYYMMDD")
    s.add_argument("--date-to", help="last study date, YYYYMMDD")
    s.add_argument("--modality", help="modality in the study (CT, MR, ...)")
    s.add_argument("--study", help="StudyInstanceUID: list this study's series instead")
    s.set_defaults(func=cmd_find)

    s = sub.add_parser("get", help="retrieve one series into a folder (C-GET, or C-MOVE with --move-port)")
    _add_common(s)
    s.add_argument("--study", required=True, help="StudyInstanceUID")
    s.add_argument("--series", required=True, help="SeriesInstanceUID")
    s.add_argument("--out", required=True, help="folder for the DICOM files (created)")
    s.add_argument("--move-port", type=int, help="use C-MOVE to a storage SCP on this local port "
                                                  "(the PACS must know --calling-aet at this address and port)")
    s.set_defaults(func=cmd_get)

    s = sub.add_parser("store", help="send DICOM files or folders (C-STORE)")
    _add_common(s)
    s.add_argument("paths", nargs="+", help="DICOM files or folders (searched recursively)")
    s.set_defaults(func=cmd_store)
