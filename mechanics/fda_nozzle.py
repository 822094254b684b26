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


#: Measurement stations (m) compared in the tests and the benchmark.
SE_VELOCITY_Z = np.array([-0.088, -0.048, -0.020, -0.008, 0.0, 0.016, 0.032, 0.060, 0.080])
SE_PRESSURE_Z = np.array([-0.0903, -0.063, -0.040, -0.020, 0.0, 0.008])


def compare_sudden_expansion(data_zip: Path, reynolds: int = 500, *, h_throat_mm: float = 0.5,
                             h_far_mm: float = 1.8, progress=None) -> dict:
    """Solve the FDA sudden-expansion nozzle in 3D and compare with the measured lab mean and s.d.

    Returns
    -------
    dict
        ``velocity``: rows (z m, ours m/s, lab mean, lab s.d.); ``pressure``: rows
        (z m, ours Pa, lab mean, lab s.d.) relative to z = +0.032 m; ``report``.
    """
    from imaging.lumen_shapes import FDA_CONE_LENGTH, FDA_THROAT_LENGTH, fda_profile, mesh_fda_nozzle
    from mechanics.flow import solve_flow
    from mechanics.physiology import Physiology

    if reynolds not in FLOW_M3S:
        raise InputError(f"reynolds: one of {sorted(FLOW_M3S)}, got {reynolds}")
    labs = read_fda_zip(data_zip)
    inlet_mm = 0.0903e3 - FDA_THROAT_LENGTH - FDA_CONE_LENGTH + 20.0  # 20 mm upstream of the first tap
    mesh = mesh_fda_nozzle("sudden_expansion", inlet_length_mm=inlet_mm, outlet_length_mm=120.0,
                           h_throat_mm=h_throat_mm, h_far_mm=h_far_mm)
    fluid = Physiology(rho=1056.0, mu=0.0035)
    res = solve_flow(mesh, physiology=fluid, inlet_flow_m3s=FLOW_M3S[reynolds], outlet_pressure_pa={"outlet_1": 0.0},
                     progress=progress)
    prof = fda_profile("sudden_expansion", inlet_mm, 120.0)
    radius = lambda zmm: np.interp(zmm, prof[:, 0] + np.arange(len(prof)) * 1e-9, prof[:, 1])  # noqa: E731
    u_ours, _ = sample_axis(res, SE_VELOCITY_Z)
    u_mean, u_sd, _ = lab_statistics(labs, "plot-z-distribution-axial-velocity", SE_VELOCITY_Z)
    ref = PRESSURE_REF_Z["sudden_expansion"]
    zs = np.append(SE_PRESSURE_Z, ref)
    # Taps on the step face side: sample just upstream of z = 0 inside the throat.
    p_all = sample_wall(res, np.where(np.isclose(zs, 0.0), -1e-4, zs), radius)
    p_ours = p_all[:-1] - p_all[-1]
    p_mean, p_sd, _ = lab_statistics(labs, "plot-wall-distribution-pressure", SE_PRESSURE_Z, ref)
    return {"velocity": np.column_stack([SE_VELOCITY_Z, u_ours, u_mean, u_sd]),
            "pressure": np.column_stack([SE_PRESSURE_Z, p_ours, p_mean, p_sd]),
            "report": res.report, "tets": mesh.n_tets}
