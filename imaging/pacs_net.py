"""DICOM network plumbing for ``imaging.pacs``: associations, cancel, clear errors, receiving.

An association is opened through ``associate`` (a context manager yielding a
``Link``): refused connections, rejections and aborts become ``InputError``
naming the server; a ``cancelled()`` callable is polled on a thread and aborts
the association. ``Receiver`` stores incoming C-STORE requests in a staging folder.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
from concurrent.futures import CancelledError
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Optional, Union

from pydicom import uid as ts
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom import sop_class as sc
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_RJ
from pynetdicom.status import code_to_category

from imaging.errors import InputError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled

if TYPE_CHECKING:
    from imaging.pacs import PacsNode

log = logging.getLogger(__name__)
# pynetdicom's INFO lines print query identifiers (patient names and IDs): keep it at WARNING
# whatever level the application later gives the root logger.
if logging.getLogger("pynetdicom").level < logging.WARNING:
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)

CANCEL_POLL_S = 0.05  # how often a running operation polls ``cancelled()``
UNCOMPRESSED = [ts.ExplicitVRLittleEndian, ts.ImplicitVRLittleEndian]
COMPRESSED = [ts.JPEGBaseline8Bit, ts.JPEGExtended12Bit, ts.JPEGLossless, ts.JPEGLosslessSV1, ts.JPEGLSLossless,
              ts.JPEGLSNearLossless, ts.JPEG2000Lossless, ts.JPEG2000, ts.RLELossless,
              ts.DeflatedExplicitVRLittleEndian]
#: Retrieved in their stored encoding: one context per transfer syntax, so the PACS never has to
#: transcode (it may be unable to, e.g. JPEG 2000 without a codec plugin).
NATIVE_CLASSES = (sc.CTImageStorage, sc.EnhancedCTImageStorage, sc.MRImageStorage, sc.EnhancedMRImageStorage,
                  sc.PositronEmissionTomographyImageStorage, sc.SecondaryCaptureImageStorage)
#: Retrieved through one context each: the PACS picks a syntax and transcodes if needed.
OTHER_CLASSES = (
    sc.LegacyConvertedEnhancedCTImageStorage, sc.EnhancedPETImageStorage, sc.NuclearMedicineImageStorage,
    sc.XRay3DCraniofacialImageStorage, sc.XRay3DAngiographicImageStorage, sc.XRayAngiographicImageStorage,
    sc.ComputedRadiographyImageStorage, sc.DigitalXRayImageStorageForPresentation,
    sc.DigitalMammographyXRayImageStorageForPresentation, sc.UltrasoundImageStorage,
    sc.UltrasoundMultiFrameImageStorage, sc.VLPhotographicImageStorage,
    sc.MultiFrameGrayscaleByteSecondaryCaptureImageStorage, sc.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    sc.MultiFrameTrueColorSecondaryCaptureImageStorage, sc.SegmentationStorage, sc.SurfaceSegmentationStorage,
    sc.RTStructureSetStorage, sc.RTDoseStorage, sc.RTPlanStorage, sc.RTImageStorage, sc.SpatialRegistrationStorage,
    sc.DeformableSpatialRegistrationStorage, sc.GrayscaleSoftcopyPresentationStateStorage,
    sc.EncapsulatedPDFStorage, sc.EncapsulatedSTLStorage, sc.BasicTextSRStorage, sc.EnhancedSRStorage,
    sc.ComprehensiveSRStorage, sc.KeyObjectSelectionDocumentStorage)
UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")
_AE_TITLE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # printable ASCII without backslash
PathLike = Union[str, os.PathLike]


def check_ae(title: str, name: str) -> str:
    """``title`` stripped, if a valid AE title; else ``InputError`` naming the parameter ``name``."""
    if not isinstance(title, str) or not _AE_TITLE.fullmatch(title) or not title.strip():
        raise InputError(f"{name} {title!r}: 1 to 16 printable ASCII characters, no backslash")
    return title.strip()


def check_uid(value: str, name: str) -> str:
    """``value``, if a valid UID; else ``InputError`` naming the parameter ``name``."""
    if len(str(value)) > 64 or not UID_PATTERN.fullmatch(str(value)):
        raise InputError(f"{name} {value!r}: not a DICOM UID (digits and dots)")
    return str(value)


def make_ae(calling_ae: str, timeout: float) -> AE:
    """Our application entity, every timeout (connect, ACSE, DIMSE, network) ``timeout`` s."""
    ae = AE(ae_title=check_ae(calling_ae, "calling AE title"))
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout
    return ae


class Link:
    """One association and what the peer did with it (rejected, aborted), for clear errors."""

    def __init__(self, node: PacsNode, ae: AE) -> None:
        self.node, self.ae, self.assoc = node, ae, None
        self.rejection: Optional[A_ASSOCIATE_RJ] = None
        self.peer_aborted = self.cancel_fired = False
        self.stop = threading.Event()

    def on_pdu(self, event) -> None:
        """``EVT_PDU_RECV`` handler: remember a rejection or an abort from the peer."""
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            self.rejection = event.pdu
        self.peer_aborted |= isinstance(event.pdu, A_ABORT_RQ)

    def watch(self, cancelled: CancelledFn) -> None:
        """Abort as soon as ``cancelled()`` turns true (runs on its own thread)."""
        while not self.stop.wait(CANCEL_POLL_S):
            if cancelled():
                self.cancel_fired = True
                log.debug("cancel requested: aborting the association")
                self.assoc.abort()
                # Wake a request waiting for its next response (pynetdicom would wait out the timeout).
                self.assoc.dimse.msg_queue.put((None, None))
                return

    def status(self, what: str, status: Optional[Dataset], cancelled: Optional[CancelledFn]) -> int:
        """Status code of a response; raises on cancel or on a missing response."""
        check_cancelled(cancelled)
        if status is None or "Status" not in status:  # pynetdicom's answer to a timeout or a lost link
            if self.peer_aborted:
                raise InputError(f"PACS {self.node} aborted the {what}: does it allow AE title "
                                 f"{self.ae.ae_title} to do this?")
            raise InputError(f"PACS {self.node}: no response to {what} within {self.ae.dimse_timeout:g} s, "
                             "or the connection was lost")
        return int(status.Status)

    def failure(self, what: str, status: Dataset) -> InputError:
        """The error for a failure status (code, category and the peer's comment)."""
        code, comment = int(status.Status), str(status.get("ErrorComment", "") or "")
        detail = f"{code_to_category(code).lower()}{': ' + comment if comment else ''}"
        return InputError(f"PACS {self.node}: {what} failed with status 0x{code:04X} ({detail})")


@contextmanager
def associate(ae: AE, node: PacsNode, cancelled: Optional[CancelledFn] = None, ext_neg: Optional[list] = None,
              handlers: Iterable = ()) -> Iterator[Link]:
    """An established association with ``node``: released at exit, aborted on error or cancel."""
    check_cancelled(cancelled)
    link = Link(node, ae)
    try:
        link.assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, ext_neg=ext_neg,
                                  evt_handlers=[*handlers, (evt.EVT_PDU_RECV, link.on_pdu)])
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot connect to PACS {node}: {getattr(exc, 'strerror', None) or exc}") from None
    if not link.assoc.is_established:
        if link.rejection is not None:
            raise InputError(f"PACS {node} rejected the association from AE {ae.ae_title}: "
                             f"{link.rejection.reason_str.lower()}")
        try:  # find out why: pynetdicom only tells that the connection failed
            socket.create_connection((node.host, node.port), timeout=ae.connection_timeout).close()
        except socket.timeout:
            raise InputError(f"cannot connect to PACS {node}: no answer within {ae.connection_timeout:g} s") from None
        except OSError as exc:
            raise InputError(f"cannot connect to PACS {node}: {(exc.strerror or str(exc)).lower()}") from None
        raise InputError(f"PACS {node} did not accept the association from AE {ae.ae_title} "
                         "(aborted, timed out or no common presentation context)")
    watcher = threading.Thread(target=link.watch, args=(cancelled,), daemon=True) if cancelled else None
    if watcher is not None:
        watcher.start()
    try:
        yield link
    except BaseException:  # a peer busy with an operation would not answer a release request
        link.stop.set()
        if link.assoc.is_established:
            link.assoc.abort()
        raise
    finally:
        link.stop.set()
        if watcher is not None:
            watcher.join()
    if link.assoc.is_established:
        link.assoc.release()
    if link.cancel_fired:
        raise CancelledError("cancelled by user")


class Receiver:
    """C-STORE handler writing each image as sent into a hidden staging folder in ``out_folder``.

    ``commit`` moves the complete series into ``out_folder``; ``discard`` removes the staging folder.
    """

    def __init__(self, out_folder: PathLike, cancelled: Optional[CancelledFn]) -> None:
        self.out, self.cancelled = Path(out_folder), cancelled
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self.folder = Path(tempfile.mkdtemp(prefix=".twinplan-partial-", dir=self.out))
        except OSError as exc:
            raise InputError(f"{self.out}: cannot write there ({exc.strerror or exc})") from None
        self.files: dict[str, Path] = {}
        self.error: Optional[str] = None
        self._lock = threading.Lock()

    def __call__(self, event) -> int:
        if self.cancelled is not None and self.cancelled():
            return 0xA700  # refused; the cancel watch aborts the association
        uid = str(event.request.AffectedSOPInstanceUID)
        path = self.folder / f"{uid if UID_PATTERN.fullmatch(uid) else hashlib.sha1(uid.encode()).hexdigest()}.dcm"
        try:
            path.write_bytes(event.encoded_dataset())
        except OSError as exc:
            self.error = f"{self.out}: {exc.strerror or exc}"
            return 0xA700
        with self._lock:
            self.files[path.name] = path
        return 0x0000

    def discard(self) -> None:
        """Remove the staging folder and anything still in it."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def commit(self, node: PacsNode, series_uid: str) -> list[Path]:
        """Move the staged files into ``out_folder``; the files, sorted."""
        if not self.files:
            raise InputError(f"PACS {node}: series {series_uid} returned no images")
        for name, path in self.files.items():
            os.replace(path, self.out / name)
        return sorted(self.out / name for name in self.files)


def drain_retrieve(link: Link, what: str, responses, receiver: Receiver, progress: ProgressFn,
                   cancelled: Optional[CancelledFn]) -> None:
    """Follow the responses of a C-GET/C-MOVE to its final status."""
    for status, _identifier in responses:
        code = link.status(what, status, cancelled)
        n = {k: int(status.get(f"NumberOf{k}Suboperations") or 0) for k in ("Completed", "Failed", "Warning")}
        if code in (0xFF00, 0xFF01):
            done = sum(n.values())
            total = done + int(status.get("NumberOfRemainingSuboperations") or 0)
            if total:
                progress(done / total, f"Received {done}/{total} images")
            else:  # the counts are optional in pending responses
                progress(0.0, f"Received {len(receiver.files)} images")
            continue
        if receiver.error:
            raise InputError(f"cannot save retrieved images: {receiver.error}")
        if n["Failed"] or code == 0xB000:
            raise InputError(f"PACS {link.node}: {what}: {n['Failed']} image(s) could not be transferred "
                             f"({n['Completed']} arrived); nothing was kept")
        if code != 0:
            raise link.failure(what, status)
        return
    check_cancelled(cancelled)
    raise InputError(f"PACS {link.node}: {what} ended without a final response")

