"""FDA benchmark nozzle: read the measured round-robin data and compare a 3D solution with it.

Data: ``shared/data/fda_nozzle/*.zip`` (Hariharan & Malinauskas, FDA round
robin 1, v2.0; public domain). Each zip holds ``experiment/PIV_*_<lab>.txt``
with ``plot-<name> [z]`` / count / ``x y`` blocks in SI units.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imaging.errors import InputError

#: Volumetric flow (m3/s) per throat Reynolds number (README table).
FLOW_M3S = {500: 5.20624e-6, 2000: 2.08250e-5, 3500: 3.64437e-5}
#: Pressure reference tap (m): SE uses z = +0.032, CD z = +0.090 (files and README).
PRESSURE_REF_Z = {"sudden_expansion": 0.032, "conical_diffuser": 0.090}


@dataclass
class LabData:
    lab: str
    blocks: dict  # name -> (n, 2) array


def read_fda_zip(path: Path) -> list[LabData]:
    """Parse every lab file in one FDA zip (``plot-*`` blocks as arrays, SI units).

    Raises
    ------
    InputError
        Missing or malformed zip.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"FDA data: {path} not found")
    out = []
    try:
        with zipfile.ZipFile(path) as zf:
            for name in sorted(zf.namelist()):
                if not name.endswith(".txt") or "PIV_" not in name:
                    continue
                text = zf.read(name).decode("latin-1").splitlines()
                out.append(LabData(name.rsplit("_", 1)[-1][:-4], _parse_blocks(text)))
    except zipfile.BadZipFile as exc:
        raise InputError(f"FDA data: {path} is not a zip file") from exc
    if not out:
        raise InputError(f"FDA data: no PIV_*.txt files in {path}")
    return out


def _parse_blocks(lines: list[str]) -> dict:
    blocks, i = {}, 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("plot-"):
            key = " ".join(line.split()[:2]) if "-at-z" in line else line.split()[0]
            try:
                n = int(lines[i + 1].split()[0])
                rows = [[float(t) for t in lines[i + 2 + k].split()[:2]] for k in range(n)]
            except (IndexError, ValueError):
                i += 1
                continue
            blocks[key] = np.array(rows).reshape(-1, 2)
            i += 2 + n
        else:
            i += 1
    return blocks


def lab_statistics(labs: list[LabData], block: str, z: np.ndarray, ref_z: float | None = None) -> tuple:
    """Mean and sample s.d. over labs of one block interpolated at ``z`` (m).

    With ``ref_z`` the block is first shifted to zero at that z (pressure).
    Labs without the block are skipped; returns (mean, sd, n_labs).
    """
    vals = []
    for lab in labs:
        b = lab.blocks.get(block)
        if b is None or len(b) < 2:
            continue
        order = np.argsort(b[:, 0])
        zz, yy = b[order, 0], b[order, 1]
        if z.min() < zz.min() - 2e-3 or z.max() > zz.max() + 2e-3:
            continue
        v = np.interp(z, zz, yy)
        if ref_z is not None:
            v = v - np.interp(ref_z, zz, yy)
        vals.append(v)
    if not vals:
        raise InputError(f"FDA data: no lab has block {block!r} over z {z.min():.3f}..{z.max():.3f} m")
    arr = np.array(vals)
    return arr.mean(axis=0), arr.std(axis=0, ddof=1) if len(arr) > 1 else np.zeros(len(z)), len(arr)


def sample_axis(result, z_m: np.ndarray) -> tuple:
    """(axial velocity m/s, pressure Pa) of a FlowResult on the axis at z (m)."""
    import pyvista as pv

    line = pv.PolyData(np.column_stack([np.zeros_like(z_m), np.zeros_like(z_m), z_m * 1e3]))
    s = line.sample(result.mesh)
    return np.asarray(s.point_data["velocity"])[:, 2], np.asarray(s.point_data["pressure_mmhg"]) * 133.322387415


def sample_wall(result, z_m: np.ndarray, radius_of_z) -> np.ndarray:
    """Wall pressure (Pa) at z (m) sampled just inside the wall (at 97 % of the radius)."""
    import pyvista as pv

    r = 0.97 * radius_of_z(z_m * 1e3)
    c = np.cos(np.pi / 4)
    pts = np.column_stack([r * c, r * c, z_m * 1e3])
    s = pv.PolyData(pts).sample(result.mesh)
    return np.asarray(s.point_data["pressure_mmhg"]) * 133.322387415
