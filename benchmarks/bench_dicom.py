"""Load a generated 512x512xN CT series: TwinPlan (scan + load) vs SimpleITK alone."""
from __future__ import annotations

import tempfile

import numpy as np
import SimpleITK as sitk

from benchmarks.timing import best_time
from imaging.dicom import load_dicom_folder
from imaging.phantom import write_ct_series


def run(n_slices: int = 300, repeat: int = 3) -> dict:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="twinplan-bench-") as folder:
        base = rng.integers(-1000, 1500, size=(512, 512), dtype=np.int16)
        array = np.stack([np.roll(base, k, axis=1) for k in range(n_slices)])
        write_ct_series(array, folder, spacing_xyz=(0.7, 0.7, 1.0), origin_xyz=(-180.0, -180.0, 0.0))

        def ours():
            vol = load_dicom_folder(folder)
            assert vol.array.shape == array.shape

        def baseline():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
            img = reader.Execute()
            assert img.GetSize()[2] == n_slices

        ours(), baseline()  # warm the page cache for both
        t_ours = best_time(ours, repeat)
        t_base = best_time(baseline, repeat)
    return {"name": f"load 512x512x{n_slices} CT vs SimpleITK", "ours_s": t_ours,
            "baseline_s": t_base, "ratio": t_base / t_ours, "goal": 0.8}
