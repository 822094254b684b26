"""DICOM intake: header scan and series load vs SimpleITK and vs pydicom alone; peak memory."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
import SimpleITK as sitk

from benchmarks.timing import best_time
from imaging.dicom import load_dicom_folder, scan_dicom_folder
from imaging.phantom import write_ct_series

# Peak RSS (VmHWM) of a fresh process; ru_maxrss would carry the parent's peak across exec.
_MEMORY_PROBE = """
import json, sys
from imaging.dicom import load_dicom_folder
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
before = hwm()
vol = load_dicom_folder(sys.argv[1])
print(json.dumps({"peak_kib": hwm() - before, "array_kib": vol.array.nbytes / 1024}))
"""


def _series(folder: str, n_slices: int, size: int = 512) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(-1000, 1500, size=(size, size), dtype=np.int16)
    array = np.stack([np.roll(base, k, axis=1) for k in range(n_slices)])
    write_ct_series(array, folder, spacing_xyz=(0.7, 0.7, 1.0), origin_xyz=(-180.0, -180.0, 0.0))


def _sitk_load(folder: str) -> None:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    reader.Execute()


def _pydicom_load(folder: str) -> None:
    """What a pydicom-only reader does: read all, sort by position, stack, rescale."""
    dss = [pydicom.dcmread(f) for f in glob.glob(os.path.join(folder, "*"))]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    vol = np.stack([d.pixel_array for d in dss]).astype(np.float32)
    vol *= float(dss[0].RescaleSlope)
    vol += float(dss[0].RescaleIntercept)


def _row(name: str, ours: float, base: float, goal: float) -> dict:
    return {"name": name, "ours_s": ours, "baseline_s": base, "ratio": base / ours, "goal": goal}


def run_load(n_slices: int, repeat: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="twinplan-bench-") as folder:
        _series(folder, n_slices)
        ours = lambda: load_dicom_folder(folder)  # noqa: E731
        ours(), _sitk_load(folder)  # warm the page cache for all
        t_ours = best_time(ours, repeat)
        rows = [_row(f"load 512x512x{n_slices} CT vs SimpleITK", t_ours,
                     best_time(lambda: _sitk_load(folder), repeat), 0.8)]
        if n_slices >= 600:
            rows.append(_row(f"load 512x512x{n_slices} CT vs pydicom alone", t_ours,
                             best_time(lambda: _pydicom_load(folder), repeat), 1.0))
            env = dict(os.environ, PYTHONPATH=os.getcwd())
            out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, folder], capture_output=True,
                                 text=True, env=env, check=True).stdout
            mem = json.loads(out.strip().splitlines()[-1])
            # Ratio printed as (1.5 x array) / peak, so >= 1.0 means within the 1.5x budget.
            rows.append({"name": f"peak memory load 512x512x{n_slices} (budget 1.5x array)",
                         "ours_s": mem["peak_kib"] / 2**20, "baseline_s": mem["array_kib"] / 2**20,
                         "ratio": 1.5 * mem["array_kib"] / max(mem["peak_kib"], 1), "goal": 1.0,
                         "unit": "GiB"})
    return rows


def run_scan(n_files: int, repeat: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="twinplan-bench-") as folder:
        _series(folder, n_files, size=64)
        scan = lambda: scan_dicom_folder(folder)  # noqa: E731
        sitk_scan = lambda: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder)  # noqa: E731
        pyd = lambda: [pydicom.dcmread(f, stop_before_pixels=True)  # noqa: E731
                       for f in glob.glob(os.path.join(folder, "*"))]
        scan(), sitk_scan()
        t_ours = best_time(scan, repeat)
        # No goal: GDCM's scanner is C++; ours also checks every file's pixel data and geometry.
        return [_row(f"header scan {n_files} files vs SimpleITK (GDCM)", t_ours, best_time(sitk_scan, repeat), None),
                _row(f"header scan {n_files} files vs pydicom alone", t_ours, best_time(pyd, repeat), None)]


def run(n_slices: int = 600, repeat: int = 3) -> list[dict]:
    return run_scan(1000, repeat) + run_load(300, repeat) + run_load(n_slices, repeat)
