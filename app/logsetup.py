"""Logging set-up: a rotating log file under the user's data folder, scrubbed.

Patient identifiers never reach a log. The DICOM code does not read them into
our types, but file and folder names often carry them (PACS exports name
folders after the patient) and so can exception texts. So every record passes
through :class:`RedactingFilter`, which replaces each identifier seen in a
loaded DICOM file (patient name and its parts, IDs, birth date in DICOM and
ISO form) with ``[redacted]`` before any handler formats it. The identifiers
are only held in memory, never written anywhere.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import re
import threading
from pathlib import Path
from typing import Iterable, Optional

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s]: %(message)s"
#: DICOM attributes that identify a patient (PS3.15 basic profile, the ones a log could echo).
IDENTIFIER_TAGS = ("PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate", "OtherPatientNames",
                   "PatientMotherBirthName", "AccessionNumber", "ReferringPhysicianName")
#: Parts of names shorter than this are too common to redact on their own (e.g. "J").
MIN_PART_CHARS = 3


def user_data_dir() -> Path:
    """Folder for logs and recovery data (``$TWINPLAN_DATA_DIR`` overrides).

    Returns
    -------
    Path
        ``$TWINPLAN_DATA_DIR``, else ``$XDG_DATA_HOME/twinplan``, else
        ``~/.local/share/twinplan``; not created here.
    """
    override = os.environ.get("TWINPLAN_DATA_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "twinplan"


def log_file_path() -> Path:
    """The current log file (``<data dir>/logs/twinplan.log``)."""
    return user_data_dir() / "logs" / "twinplan.log"


class IdentifierRegistry:
    """Identifiers to scrub, collected from DICOM headers (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: Optional[re.Pattern] = None

    def add(self, values: Iterable[str]) -> int:
        """Add raw identifier strings (and their variants); returns how many are known now."""
        new = set()
        for value in values:
            new.update(_variants(str(value)))
        with self._lock:
            if not new <= self._values:
                self._values |= new
                ordered = sorted(self._values, key=len, reverse=True)  # longest first: no partial leftovers
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered), re.IGNORECASE)
            return len(self._values)

    def scrub(self, text: str) -> str:
        """``text`` with every known identifier replaced by ``[redacted]``."""
        pattern = self._pattern
        return text if pattern is None or not text else pattern.sub(REDACTED, text)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None


def _variants(value: str) -> set[str]:
    value = value.strip()
    if not value:
        return set()
    out = {value}
    if "^" in value or " " in value:
        parts = [p.strip() for p in re.split(r"[\^ ,]+", value) if p.strip()]
        out.update(p for p in parts if len(p) >= MIN_PART_CHARS)
        if len(parts) >= 2:
            out.add(" ".join(parts))
            out.add(" ".join(reversed(parts[:2])))
            out.add(", ".join(parts[:2]))
            out.add("_".join(parts))
    if re.fullmatch(r"\d{8}", value):  # DICOM DA: YYYYMMDD
        out.add(f"{value[:4]}-{value[4:6]}-{value[6:]}")
        out.add(f"{value[6:]}.{value[4:6]}.{value[:4]}")
        out.add(f"{value[4:6]}/{value[6:]}/{value[:4]}")
    return {v for v in out if len(v) >= MIN_PART_CHARS or v == value}


IDENTIFIERS = IdentifierRegistry()


def register_dicom_identifiers(paths: Iterable[str | os.PathLike]) -> int:
    """Remember the patient identifiers of DICOM files so logs never show them.

    Parameters
    ----------
    paths : iterable of path-like
        DICOM files to read (headers only, stops before pixel data); one per
        series is enough. Unreadable files are ignored.

    Returns
    -------
    int
        Number of identifier strings now scrubbed from the logs.
    """
    import pydicom

    values: list[str] = []
    for path in paths:
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=list(IDENTIFIER_TAGS))
        except Exception:  # noqa: BLE001 -- not DICOM / unreadable: nothing to register
            continue
        for tag in IDENTIFIER_TAGS:
            element = ds.get(tag)
            if element is None:
                continue
            items = element if isinstance(element, (list, tuple, pydicom.multival.MultiValue)) else [element]
            values.extend(str(v) for v in items if str(v).strip())
    return IDENTIFIERS.add(values)


def register_identifiers_under(path: str | os.PathLike, max_files: int = 20) -> int:
    """Register the identifiers of the first DICOM file found under ``path`` (a file or folder).

    Called before an import starts, so even the first log line about it (which
    names the folder) is scrubbed. Reads at most ``max_files`` headers.
    """
    root = Path(path)
    if root.is_file():
        return register_dicom_identifiers([root])
    tried = 0
    for folder, _dirs, files in os.walk(root):
        for name in sorted(files):
            tried += 1
            before = len(IDENTIFIERS._values)
            if register_dicom_identifiers([Path(folder) / name]) > before or tried >= max_files:
                return len(IDENTIFIERS._values)
    return len(IDENTIFIERS._values)


class RedactingFilter(logging.Filter):
    """Rewrites each record with identifiers replaced; never drops a record."""

    def __init__(self, registry: IdentifierRegistry = IDENTIFIERS) -> None:
        super().__init__()
        self.registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.registry.scrub(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.registry.scrub(record.exc_text)
            record.exc_info = None  # the formatter would rebuild the raw text from it
        if record.stack_info:
            record.stack_info = self.registry.scrub(record.stack_info)
        return True


def setup_logging(
    level: int = logging.INFO,
    *,
    log_file: Optional[Path] = None,
    max_bytes: int = 1_000_000,
    backup_count: int = 5,
    console: bool = True,
) -> Path:
    """Log to a rotating file (and stderr), every record scrubbed of identifiers.

    Parameters
    ----------
    level : int
        Root logger level.
    log_file : Path, optional
        Default :func:`log_file_path`.
    max_bytes : int
        Size (bytes) at which the file rotates.
    backup_count : int
        Rotated files kept (``twinplan.log.1`` ...).
    console : bool
        Also log to stderr (same filter).

    Returns
    -------
    Path
        The log file.
    """
    path = Path(log_file) if log_file is not None else log_file_path()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_twinplan", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backup_count,
                                                             encoding="utf-8"))
    except OSError as exc:  # a read-only home must not stop the app
        console = True
        logging.getLogger(__name__).warning("no log file (%s): logging to stderr only", exc.strerror)
    if console:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler._twinplan = True
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    root.setLevel(level)
    return path
