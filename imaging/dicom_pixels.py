"""Pixel loading for scanned DICOM series.

Plain uncompressed 16-bit greyscale slices are read straight from the pixel
offsets found during the header scan (threads, no decoder); anything else
(JPEG 2000, RLE, packed signed values...) is decoded by SimpleITK/GDCM.
Both give the same HU (tested on real series).
"""
from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Optional

import numpy as np
import SimpleITK as sitk

from imaging.dicom_header import HeaderValues
from imaging.errors import InputError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled

if TYPE_CHECKING:
    from imaging.dicom_series import SeriesInfo

PIXEL_DATA_TAG = 0x7FE00010

NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # implicit/explicit VR little endian


def native_pixel_recipe(ds, hv: HeaderValues, offset: Optional[int]) -> Optional[tuple[int, str, float, float]]:
    """Direct-read recipe for plain 16-bit greyscale slices; None means decode with GDCM."""
    if offset is None:
        return None
    try:
        syntax = str(ds.file_meta.TransferSyntaxUID)
        bits = hv.us("BitsStored", 0)
        ok = (
            syntax in NATIVE_SYNTAXES
            and hv.us("BitsAllocated", 0) == 16
            and 8 < bits <= 16
            and hv.us("HighBit", bits - 1) == bits - 1
            and hv.us("SamplesPerPixel", 1) == 1
            and hv.text("PhotometricInterpretation") == "MONOCHROME2"
        )
        if not ok:
            return None
        signed = hv.us("PixelRepresentation", 0) == 1
        if signed and bits < 16:
            return None  # sign extension of packed values: leave it to GDCM
        dtype = "<i2" if signed else ("<u2" if bits == 16 else f"<u2:{bits}")
        slope = hv.number("RescaleSlope", 1.0) or 1.0
        intercept = hv.number("RescaleIntercept", 0.0)
    except (AttributeError, ValueError, TypeError, KeyError):
        return None
    return offset, dtype, slope, intercept


def load_native_pixels(
    series: SeriesInfo, progress: ProgressFn, cancelled: Optional[CancelledFn], wide: bool = False
) -> np.ndarray:
    """Read uncompressed 16-bit slices straight from their pixel offsets, in threads.

    HU go into int16 when slope and intercept are integers and every value
    fits (the usual CT case), else int32 (``wide``) or float32.
    """
    n, count = len(series.slices), series.rows * series.columns
    integer = all(float(s.native[2]).is_integer() and float(s.native[3]).is_integer() for s in series.slices)
    dtype = (np.int32 if wide else np.int16) if integer else np.float32
    out = np.empty((n, series.rows, series.columns), dtype=dtype)
    info = np.iinfo(dtype) if integer else None

    def read(k: int) -> bool:
        s = series.slices[k]
        offset, raw_dtype, slope, intercept = s.native
        raw_dtype, _, bits = raw_dtype.partition(":")
        values = np.fromfile(s.path, dtype=raw_dtype, count=count, offset=offset)
        if values.size != count:
            raise InputError(f"{s.path}: truncated pixel data")
        if bits:  # unused high bits may hold overlays: keep BitsStored bits only
            values &= (1 << int(bits)) - 1
        if integer:
            hu = values.astype(np.int32)
            if slope != 1.0:
                hu *= int(slope)
            hu += int(intercept)
            if hu.min() < info.min or hu.max() > info.max:
                return False
        else:
            hu = values * np.float32(slope) + np.float32(intercept)
        out[k] = hu.reshape(series.rows, series.columns)
        return True

    done = 0
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for fits in pool.map(read, range(n)):
            if not fits:
                return load_native_pixels(series, progress, cancelled, wide=True)
            done += 1
            if done % 16 == 0 or done == n:
                check_cancelled(cancelled)
                progress(done / n, f"Loading slices {done}/{n}")
    return out


def load_gdcm_pixels(series: SeriesInfo, progress: ProgressFn, cancelled: Optional[CancelledFn]) -> np.ndarray:
    """Decode slices (any transfer syntax) with SimpleITK/GDCM, in parallel chunks."""
    files = series.files
    n = len(files)
    chunks = [files[i : i + 16] for i in range(0, n, 16)]
    out: Optional[np.ndarray] = None
    done = 0

    def read_chunk(chunk: list[str]) -> np.ndarray:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(chunk)
        try:
            img = reader.Execute()
        except RuntimeError:
            # Find the offending file for a useful message.
            for f in chunk:
                try:
                    sitk.ReadImage(f)
                except RuntimeError as exc:
                    raise InputError(f"{f}: cannot decode pixel data ({_first_line(exc)})") from exc
            raise
        return sitk.GetArrayFromImage(img)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for i, arr in enumerate(pool.map(read_chunk, chunks)):
            check_cancelled(cancelled)
            if arr.shape[1:] != (series.rows, series.columns):
                raise InputError(f"{chunks[i][0]}: decoded size {arr.shape[1:]} differs from its header")
            if out is None:
                dtype = np.int16 if arr.dtype.kind in "iu" and arr.min() >= -32768 and arr.max() <= 32767 else arr.dtype
                out = np.empty((n,) + arr.shape[1:], dtype=dtype)
            elif arr.dtype != out.dtype and not np.can_cast(arr.dtype, out.dtype):
                out = out.astype(np.result_type(out.dtype, arr.dtype))
            out[done : done + arr.shape[0]] = arr
            done += arr.shape[0]
            progress(done / n, f"Loading slices {done}/{n}")
    assert out is not None
    return out


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:160] if text else exc.__class__.__name__


def pixel_data_problem(fh, ds, hv: HeaderValues) -> tuple[Optional[str], Optional[int]]:
    """Check the pixel data element after a header-only read (file at its start).

    Returns (problem or None, byte offset of uncompressed pixel values or None).
    """
    start = fh.tell()
    size = os.fstat(fh.fileno()).st_size
    head = fh.read(12)
    if len(head) < 8:
        return "no pixel data", None
    little = ds.is_little_endian if ds.is_little_endian is not None else True
    fmt = "<HH" if little else ">HH"
    group, elem = struct.unpack(fmt, head[:4])
    if (group << 16 | elem) != PIXEL_DATA_TAG:
        return "no pixel data", None
    implicit = ds.is_implicit_VR if ds.is_implicit_VR is not None else False
    if implicit:
        (length,) = struct.unpack("<I" if little else ">I", head[4:8])
        header = 8
    else:
        (length,) = struct.unpack("<I" if little else ">I", head[8:12])
        header = 12
    if length == 0xFFFFFFFF:  # encapsulated (compressed): fragments follow
        return (None if size > start + header + 8 else "truncated pixel data"), None
    if start + header + length > size:
        return f"truncated pixel data ({size - start - header} of {length} bytes)", None
    expected = hv.us("Rows", 0) * hv.us("Columns", 0) * hv.us("BitsAllocated", 0) // 8
    if length < expected:
        return f"truncated pixel data ({length} of {expected} bytes)", None
    return None, start + header
