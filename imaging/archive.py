"""Archives given as input (a zipped DICOM folder)."""
from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from imaging.errors import InputError

#: Refuse archives that would expand beyond this (zip bombs, wrong file).
MAX_ZIP_BYTES = 8 << 30


def extract_zip(path: Path) -> tempfile.TemporaryDirectory:
    """Extract a zipped folder to a temporary directory (safe names only, size-capped)."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            total = sum(m.file_size for m in members)
            if total > MAX_ZIP_BYTES:
                raise InputError(f"{path}: archive expands to {total / 2**30:.1f} GiB (limit 8 GiB)")
            tmp = tempfile.TemporaryDirectory(prefix="twinplan-zip-")
            for i, m in enumerate(members):
                # Names inside the archive mean nothing; never trust them as paths.
                safe = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(m.filename).name)[:60]
                target = Path(tmp.name) / f"{i:06d}_{safe}"
                with zf.open(m) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            return tmp
    except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
        raise InputError(f"{path}: unreadable zip archive ({exc})") from exc
