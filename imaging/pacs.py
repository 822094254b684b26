"""PACS connectivity: verify (C-ECHO), query (C-FIND), retrieve (C-GET / C-MOVE), send (C-STORE).

Network failures raise ``InputError`` naming the server (``host:port AE``).
Retrieved images are written as sent (original transfer syntax) into a hidden
staging folder and moved into place only once the whole series arrived; cancel
aborts the association and leaves no files. Nothing here logs patient names or
IDs, and pynetdicom, whose INFO lines would, is held at WARNING. The association
plumbing lives in ``imaging.pacs_net``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom import AllStoragePresentationContexts, build_role, evt
from pynetdicom import sop_class as sc
from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, code_to_category

from imaging.dicom_header import HeaderValues
from imaging.errors import InputError
from imaging.pacs_net import (COMPRESSED, NATIVE_CLASSES, OTHER_CLASSES, UID_PATTERN, UNCOMPRESSED, PathLike,
                              Receiver, associate, check_ae, check_uid, drain_retrieve, make_ae)
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress

log = logging.getLogger(__name__)

DEFAULT_CALLING_AE = "TWINPLAN"
DEFAULT_TIMEOUT_S = 10.0
MAX_CONTEXTS = 128  # presentation contexts one association may propose (PS3.8)
STUDY_KEYS = ("StudyInstanceUID", "PatientName", "PatientID", "StudyDate", "StudyTime", "AccessionNumber",
              "ModalitiesInStudy", "StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_KEYS = ("SeriesInstanceUID", "SeriesNumber", "Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances")
DateLike = Union[str, dt.date, None]


@dataclass(frozen=True)
class PacsNode:
    """A DICOM node: host, TCP port and (called) AE title of a PACS."""

    host: str
    port: int
    ae_title: str

    def __post_init__(self) -> None:
        if not str(self.host).strip():
            raise InputError("PACS host: empty")
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise InputError(f"PACS port {self.port!r}: expected 1..65535")
        check_ae(self.ae_title, "PACS AE title")

    def __str__(self) -> str:
        return f"{self.host}:{self.port} {self.ae_title}"


def _dicom_date(value: DateLike, name: str) -> str:
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    text = str(value or "").strip().replace("-", "")
    try:
        return text and dt.datetime.strptime(text, "%Y%m%d").strftime("%Y%m%d")
    except ValueError:
        raise InputError(f"{name} {value!r}: expected a date YYYYMMDD") from None


def echo(node: PacsNode, calling_ae: str = DEFAULT_CALLING_AE, timeout: float = DEFAULT_TIMEOUT_S) -> float:
    """Verify the connection to a PACS (C-ECHO).

    Parameters
    ----------
    node : PacsNode
        The server.
    calling_ae, timeout : str, float
        Our AE title as configured on the server; seconds to wait for each answer.

    Returns
    -------
    float
        Round-trip time of the C-ECHO request in seconds (association set-up not counted).

    Raises
    ------
    InputError
        Unreachable server, rejected association or failure status.
    """
    ae = make_ae(calling_ae, timeout)
    ae.add_requested_context(sc.Verification)
    with associate(ae, node) as link:
        t0 = time.perf_counter()
        status = link.assoc.send_c_echo()
        seconds = time.perf_counter() - t0
        if link.status("C-ECHO", status, None) != 0:
            raise link.failure("C-ECHO", status)
    return seconds


def _values(ds: Dataset, keys: Iterable[str]) -> dict:
    """JSON-able values of the returned keys (counts as int, ModalitiesInStudy as list)."""
    out: dict = {}
    for key in (k for k in keys if k in ds):
        value = ds[key].value
        if key.startswith("NumberOf"):
            out[key] = int(value) if value not in (None, "") else None
        elif key == "ModalitiesInStudy":
            out[key] = [str(v) for v in (value if isinstance(value, (list, MultiValue)) else [value]) if v]
        else:
            out[key] = "" if value is None else str(value)
    return out


def _query(node: PacsNode, level: str, filters: dict, keys: tuple, calling_ae: str, timeout: float,
           cancelled: Optional[CancelledFn]) -> list[dict]:
    query = Dataset()
    query.QueryRetrieveLevel = level
    for key in keys:
        setattr(query, key, filters.get(key, ""))
    model = sc.StudyRootQueryRetrieveInformationModelFind
    ae = make_ae(calling_ae, timeout)
    ae.add_requested_context(model)
    found = []
    with associate(ae, node, cancelled) as link:
        for status, identifier in link.assoc.send_c_find(query, model):
            code = link.status("C-FIND", status, cancelled)
            if code == 0:
                break
            if code not in (0xFF00, 0xFF01):
                raise link.failure("C-FIND", status)
            if identifier is not None:
                found.append(_values(identifier, keys))
    log.debug("C-FIND %s level: %d match(es)", level, len(found))
    return found


def find_studies(node: PacsNode, patient_name: Optional[str] = None, patient_id: Optional[str] = None,
                 date_from: DateLike = None, date_to: DateLike = None, modality: Optional[str] = None, *,
                 calling_ae: str = DEFAULT_CALLING_AE, timeout: float = DEFAULT_TIMEOUT_S,
                 cancelled: Optional[CancelledFn] = None) -> list[dict]:
    """Search a PACS for studies (C-FIND, study root, STUDY level).

    Parameters
    ----------
    node : PacsNode
        The server.
    patient_name, patient_id, modality : str, optional
        Matching keys (wildcards ``*`` and ``?`` allowed in names and IDs); a modality in the study.
    date_from, date_to : str or datetime.date, optional
        Inclusive study date range (``YYYYMMDD``); either end may stay open.
    calling_ae, timeout, cancelled
        Our AE title; seconds to wait for each answer; ``cancelled() -> bool``.

    Returns
    -------
    list of dict
        One dict per study, newest first, with those of ``STUDY_KEYS`` the server
        returned (``ModalitiesInStudy`` a list, ``NumberOf...`` int or None).

    Raises
    ------
    InputError
        Bad parameter, unreachable server or failure status.
    """
    start, end = _dicom_date(date_from, "date_from"), _dicom_date(date_to, "date_to")
    if start and end and start > end:
        raise InputError(f"date range {start}-{end}: date_from is after date_to")
    filters = {"PatientName": patient_name or "", "PatientID": patient_id or "",
               "StudyDate": f"{start}-{end}" if start or end else ""}
    if modality:
        filters["ModalitiesInStudy"] = modality = modality.strip().upper()
        if not re.fullmatch(r"[A-Z0-9_]{1,16}", modality):
            raise InputError(f"modality {modality!r}: expected a DICOM modality such as CT or MR")
    studies = _query(node, "STUDY", filters, STUDY_KEYS, calling_ae, timeout, cancelled)
    return sorted(studies, key=lambda s: (s.get("StudyDate", ""), s.get("StudyTime", "")), reverse=True)


def find_series(node: PacsNode, study_uid: str, *, calling_ae: str = DEFAULT_CALLING_AE,
                timeout: float = DEFAULT_TIMEOUT_S, cancelled: Optional[CancelledFn] = None) -> list[dict]:
    """List the series of one study (C-FIND, study root, SERIES level).

    Parameters
    ----------
    node : PacsNode
        The server.
    study_uid : str
        StudyInstanceUID of the study.
    calling_ae, timeout, cancelled
        As for ``find_studies``.

    Returns
    -------
    list of dict
        One dict per series, by series number, with those of ``SERIES_KEYS`` the
        server returned (``NumberOfSeriesRelatedInstances`` int or None).

    Raises
    ------
    InputError
        Bad UID, unreachable server or failure status.
    """
    filters = {"StudyInstanceUID": check_uid(study_uid, "study UID")}
    series = _query(node, "SERIES", filters, ("StudyInstanceUID",) + SERIES_KEYS, calling_ae, timeout, cancelled)
    for s in series:
        s.pop("StudyInstanceUID", None)
    return sorted(series, key=lambda s: int(s["SeriesNumber"]) if s.get("SeriesNumber", "").isdigit() else 0)


def _retrieve(node: PacsNode, study_uid: str, series_uid: str, out_folder: PathLike,
              progress: Optional[ProgressFn], cancelled: Optional[CancelledFn], calling_ae: str, timeout: float,
              listen: Optional[tuple[str, int]]) -> list[Path]:
    """C-GET (``listen`` None) or C-MOVE to a storage SCP on ``listen`` (host, port)."""
    progress = progress or no_progress
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "SERIES", check_uid(study_uid, "study UID")
    query.SeriesInstanceUID = check_uid(series_uid, "series UID")
    ae = make_ae(calling_ae, timeout)
    what = "C-GET" if listen is None else "C-MOVE"
    receiver = Receiver(out_folder, cancelled)
    try:
        if listen is None:
            model = sc.StudyRootQueryRetrieveInformationModelGet
            ae.add_requested_context(model)
            for sop in NATIVE_CLASSES:
                ae.add_requested_context(sop, UNCOMPRESSED)
                for syntax in COMPRESSED:
                    ae.add_requested_context(sop, [syntax])
            for sop in OTHER_CLASSES:
                ae.add_requested_context(sop, UNCOMPRESSED + COMPRESSED)
            roles = [build_role(sop, scp_role=True) for sop in NATIVE_CLASSES + OTHER_CLASSES]
            with associate(ae, node, cancelled, roles, [(evt.EVT_C_STORE, receiver)]) as link:
                drain_retrieve(link, what, link.assoc.send_c_get(query, model), receiver, progress, cancelled)
        else:
            model = sc.StudyRootQueryRetrieveInformationModelMove
            ae.add_requested_context(model)
            for context in AllStoragePresentationContexts:
                ae.add_supported_context(context.abstract_syntax, UNCOMPRESSED + COMPRESSED)
            try:
                server = ae.start_server(listen, block=False, evt_handlers=[(evt.EVT_C_STORE, receiver)])
            except OSError as exc:
                raise InputError(f"cannot listen on port {listen[1]} for C-MOVE: {exc.strerror or exc}") from None
            try:
                with associate(ae, node, cancelled) as link:
                    responses = link.assoc.send_c_move(query, ae.ae_title, model)
                    drain_retrieve(link, what, responses, receiver, progress, cancelled)
            finally:
                server.shutdown()
        check_cancelled(cancelled)
        files = receiver.commit(node, query.SeriesInstanceUID)
    finally:
        receiver.discard()
    log.debug("%s series %s: %d file(s)", what, query.SeriesInstanceUID, len(files))
    progress(1.0, f"Retrieved {len(files)} images")
    return files


def get_series(node: PacsNode, study_uid: str, series_uid: str, out_folder: PathLike,
               progress: Optional[ProgressFn] = None, cancelled: Optional[CancelledFn] = None, *,
               calling_ae: str = DEFAULT_CALLING_AE, timeout: float = DEFAULT_TIMEOUT_S) -> list[Path]:
    """Retrieve one series with C-GET: the images come back on our own association.

    We take the storage SCP role (role selection) for CT, MR, PET, secondary capture
    and other common storage classes, offering image classes their stored transfer
    syntax, so compressed images arrive unchanged.

    Parameters
    ----------
    node, study_uid, series_uid : PacsNode, str, str
        The server and the series to fetch.
    out_folder : path-like
        Folder for the files (created); each is named ``<SOPInstanceUID>.dcm``.
    progress, cancelled, calling_ae, timeout
        As for ``store_files``.

    Returns
    -------
    list of Path
        The files written, sorted; none unless the whole series arrived.

    Raises
    ------
    InputError
        Unreachable server, failure status, missing series, or unwritable folder.
    concurrent.futures.CancelledError
        If cancelled; no files are left behind.
    """
    return _retrieve(node, study_uid, series_uid, out_folder, progress, cancelled, calling_ae, timeout, None)


def move_series(node: PacsNode, study_uid: str, series_uid: str, out_folder: PathLike,
                progress: Optional[ProgressFn] = None, cancelled: Optional[CancelledFn] = None, *,
                listen_port: int, listen_host: str = "", calling_ae: str = DEFAULT_CALLING_AE,
                timeout: float = DEFAULT_TIMEOUT_S) -> list[Path]:
    """Retrieve one series with C-MOVE to a storage SCP we run for the duration.

    The PACS must know ``calling_ae`` with this machine's address and
    ``listen_port``; it opens its own association to send the images there.

    Parameters
    ----------
    listen_port : int
        TCP port of our temporary storage SCP.
    listen_host : str
        Address it listens on ("" for every interface).
    node, study_uid, series_uid, out_folder, progress, cancelled, calling_ae, timeout
        As for ``get_series``.

    Returns
    -------
    list of Path
        As for ``get_series``.

    Raises
    ------
    InputError
        As for ``get_series``, and if the port cannot be opened.
    concurrent.futures.CancelledError
        If cancelled; no files are left behind.
    """
    return _retrieve(node, study_uid, series_uid, out_folder, progress, cancelled, calling_ae, timeout,
                     (listen_host, listen_port))


def _expand_paths(paths: Iterable[PathLike]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
        files.extend(sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p])
    return files


def _fill_uids(ds: Dataset, path: Path) -> bool:
    """Fill empty SOP Class/Instance UIDs from the file meta, Study/Series UIDs deterministically.

    The series UID is derived as ``imaging.dicom`` derives it for such files, so the
    series keeps its local UID once retrieved again. True if any UID was empty.
    """
    from imaging.dicom import derive_series_uid  # pulls in SimpleITK and scipy: only sending needs it

    hv, meta = HeaderValues(ds), getattr(ds, "file_meta", Dataset())
    before = [str(ds.get(k, "") or "").strip()
              for k in ("SeriesInstanceUID", "StudyInstanceUID", "SOPClassUID", "SOPInstanceUID")]
    if not before[0]:
        source = "|".join(hv.text(k) for k in ("StudyInstanceUID", "FrameOfReferenceUID", "SeriesNumber",
                                                "Modality", "SeriesDate", "SeriesTime"))
        ds.SeriesInstanceUID = derive_series_uid(f"{source}|{ds.get('SeriesDescription', '') or ''}")
    if not before[1]:
        keys = ("StudyDate", "StudyTime", "StudyID", "AccessionNumber", "FrameOfReferenceUID")
        ds.StudyInstanceUID = derive_series_uid("study|" + "|".join(str(ds.get(k, "") or "") for k in keys))
    if not before[2] and meta.get("MediaStorageSOPClassUID"):
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
    if not before[3]:
        uid = str(meta.get("MediaStorageSOPInstanceUID", "") or "")
        ds.SOPInstanceUID = uid if UID_PATTERN.fullmatch(uid) else derive_series_uid(
            "instance|" + hashlib.sha256(path.read_bytes()).hexdigest())
    return not all(before)


def store_files(node: PacsNode, paths: Iterable[PathLike], progress: Optional[ProgressFn] = None,
                cancelled: Optional[CancelledFn] = None, *, calling_ae: str = DEFAULT_CALLING_AE,
                timeout: float = DEFAULT_TIMEOUT_S, fill_missing_uids: bool = True) -> dict:
    """Send DICOM files to a PACS (C-STORE), e.g. derived results.

    Parameters
    ----------
    node, paths : PacsNode, iterable of path-like
        The server; files, or folders searched recursively (non-DICOM files are skipped).
    progress, cancelled : callables, optional
        ``progress(fraction, message)``; ``cancelled() -> bool`` (cancel aborts the association).
    calling_ae, timeout : str, float
        Our AE title; seconds to wait for each answer.
    fill_missing_uids : bool
        Fill in empty SOP/Study/Series UIDs, which a PACS refuses (``_fill_uids``; not on disk).

    Returns
    -------
    dict
        ``stored``, ``failed`` (refused by the server) and ``skipped`` (not DICOM)
        counts, ``uids_filled`` (files sent with filled-in UIDs) and ``failures``:
        ``{"path", "reason"}`` for every file not stored.

    Raises
    ------
    InputError
        Missing path, no DICOM file, unreachable server or lost connection.
    concurrent.futures.CancelledError
        If cancelled (files sent before the cancel stay on the server).
    """
    progress = progress or no_progress
    report: dict = {"stored": 0, "failed": 0, "skipped": 0, "uids_filled": 0, "failures": []}
    items = []
    for path in _expand_paths(paths):
        check_cancelled(cancelled)
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            sop = str(header.get("SOPClassUID", "") or "").strip()
            if not sop and fill_missing_uids:
                sop = str(header.file_meta.get("MediaStorageSOPClassUID", ""))
            items.append((path, sop, str(header.file_meta.TransferSyntaxUID)))
        except Exception:  # pydicom raises many types on non-DICOM input
            report["skipped"] += 1
            report["failures"].append({"path": str(path), "reason": "not a DICOM file"})
    if not items:
        raise InputError(f"no DICOM files to send ({report['skipped']} other file(s) skipped)")
    pairs = sorted({(sop, syntax) for _, sop, syntax in items})
    if len(pairs) > MAX_CONTEXTS:
        raise InputError(f"{len(pairs)} kinds of image (SOP class, transfer syntax) in one send: "
                         f"at most {MAX_CONTEXTS}, send fewer files at a time")
    ae = make_ae(calling_ae, timeout)
    for sop, syntax in pairs:
        ae.add_requested_context(sop, [syntax])
    with associate(ae, node, cancelled) as link:
        for i, (path, _sop, _syntax) in enumerate(items):
            progress(i / len(items), f"Sending {i + 1}/{len(items)}")
            ds = pydicom.dcmread(path)
            report["uids_filled"] += bool(fill_missing_uids and _fill_uids(ds, path))
            try:
                status = link.assoc.send_c_store(ds)
            except (ValueError, AttributeError) as exc:  # no accepted context for this SOP class/syntax
                reason = f"not accepted by the server: {exc}"
            else:
                if code_to_category(link.status("C-STORE", status, cancelled)) in (STATUS_SUCCESS, STATUS_WARNING):
                    report["stored"] += 1
                    continue
                reason = str(link.failure("C-STORE", status))
            report["failed"] += 1
            report["failures"].append({"path": str(path), "reason": reason})
    log.debug("C-STORE: %d stored, %d failed, %d skipped", report["stored"], report["failed"], report["skipped"])
    progress(1.0, f"Sent {report['stored']} of {len(items)} files")
    return report
