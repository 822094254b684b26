"""3D Navier-Stokes: Poiseuille (exact), convergence under refinement, the FFR API, cancel."""
from __future__ import annotations

from concurrent.futures import CancelledError

import numpy as np
import pytest
import pyvista as pv

from imaging.errors import InputError
from imaging.lumen_shapes import mesh_pipe
from imaging.ports import INLET, OUTLET, Port
from mechanics.flow import solve_ffr_3d, solve_flow
from mechanics.physiology import MMHG, Physiology

pytestmark = pytest.mark.fem

R_MM, L_MM, Q = 1.0, 6.0, 2.0e-7  # Re = 2 rho Q / (pi R mu) = 39: laminar


def _poiseuille(h_mm: float, order: int):
    m = mesh_pipe(R_MM, L_MM, mesh_size_mm=h_mm, quarter=True, order=order)
    res = solve_flow(m, inlet_flow_m3s=Q, outlet_pressure_pa={"outlet_1": 0.0})
    dp_exact = 8 * Physiology().mu * L_MM * 1e-3 * Q / (np.pi * (R_MM * 1e-3) ** 4)
    return res, abs(res.p_aortic_pa / dp_exact - 1.0)


@pytest.fixture(scope="module")
def curved():
    return _poiseuille(0.35, order=2)


def test_poiseuille_pressure_drop_and_profile(curved):
    res, err = curved
    # Taylor-Hood holds the exact (quadratic u, linear p) solution; the only error is the curved
    # wall, which P2 geometry represents to O(h^3): the drop is well within the 1 % of the issue.
    assert err < 0.01
    pts = np.asarray(res.mesh.points)
    mid = np.abs(pts[:, 2] - L_MM / 2) < 1.0
    r = np.hypot(pts[mid, 0], pts[mid, 1])
    uz = np.asarray(res.mesh.point_data["velocity"])[mid, 2]
    exact = 2 * Q / (np.pi * (R_MM * 1e-3) ** 2) * (1 - (r / R_MM) ** 2)
    # Nodal values of the P2 velocity against the parabola: only the wall approximation errs (2 %).
    assert np.max(np.abs(uz - exact)) / exact.max() < 0.02
    assert res.report["newton_iterations"] <= 6
    # Traction outlet p = 0 holds weakly: mean outlet pressure within 0.1 % of the drop.
    assert res.per_outlet["outlet_1"] == pytest.approx(0.0, abs=1e-3)


def test_poiseuille_convergence_rate():
    """Straight-sided tets cut the circular wall: the drop error falls as O(h^2)."""
    hs = [0.5, 0.25]
    errs = [_poiseuille(h, order=1)[1] for h in hs]
    rate = np.log(errs[0] / errs[1]) / np.log(hs[0] / hs[1])
    # Geometric error of the inscribed polygon is O(h^2); allow 1.5 for unstructured meshes.
    assert rate > 1.5, (errs, rate)
    assert errs[1] < 0.03


@pytest.fixture(scope="module")
def open_pipe_result():
    surf = pv.Cylinder(center=(0, 0, 6), direction=(0, 0, 1), radius=1.0, height=12, resolution=32,
                       capping=False).triangulate().subdivide(1)
    ports = [Port("inlet", INLET, (0, 0, 0), (0, 0, -1), 1.0, 2), Port("outlet_1", OUTLET, (0, 0, 12), (0, 0, 1), 1.0, 3)]
    seen = []
    # rho = 1 kg/m3 (Re ~ 0.3): the resistance coupling is checked against the exact Poiseuille
    # answer; at blood density (Re ~ 270) this coarse mesh adds ~0.006 of numerical inertial loss.
    res = solve_ffr_3d(surf, ports, mesh_size_mm=0.4, progress=lambda f, m: seen.append(f),
                       physiology=Physiology(rho=1.0))
    return res, seen


def test_solve_ffr_3d_healthy_pipe(open_pipe_result):
    res, seen = open_pipe_result
    ph = Physiology(rho=1.0)
    # Healthy tube: FFR from the hyperaemic flow through the Poiseuille resistance of 12 mm
    # (the inlet profile is parabolic already), p_out = P_v + R_out Q, P_a at the inlet.
    r_tube = 8 * ph.mu * 12e-3 / (np.pi * (1e-3) ** 4)
    r_out = ph.outlet_resistances([1.0])[0]
    ffr = (ph.p_venous + r_out * (ph.p_aortic - ph.p_venous) / (r_tube + r_out)) / ph.p_aortic
    # Faceted 64-gon wall (the input triangles are kept) (resistance +1-2 % of a 0.012 drop): 0.001 in FFR.
    assert res.ffr_min == pytest.approx(ffr, abs=0.001)
    assert res.p_aortic_pa == pytest.approx(ph.p_aortic, rel=5e-4)  # secant fixed point, stopped at 1e-6 changes
    q = res.flows_m3s["outlet_1"]
    # Resistance law p = R Q: the outlet traction is weak, its mean pressure sits 0.7 % above the
    # imposed value on this coarse faceted outlet (open item); bound 1 %.
    assert res.outlet_pressure_pa["outlet_1"] == pytest.approx(r_out * q, rel=0.01)
    assert set(res.mesh.point_data.keys()) >= {"pressure_mmhg", "velocity", "ffr"}
    assert np.nanmax(res.mesh.point_data["pressure_mmhg"]) == pytest.approx(ph.p_aortic / MMHG, abs=1.0)
    # WSS of Poiseuille flow 4 mu Q / (pi R^3) at mid-length, P1 gradients of P2 fields: 10 %.
    wall = res.wall
    mid = np.abs(np.asarray(wall.points)[:, 2] - 6) < 2
    assert np.median(wall.point_data["wss_pa"][mid]) == pytest.approx(4 * ph.mu * q / (np.pi * 1e-9), rel=0.10)
    along = res.ffr_along(pv.Line((0, 0, 0.5), (0, 0, 11.5), 12))
    assert np.all(np.diff(along) < 1e-6) and along[0] > along[-1]
    assert res.dofs > 1000 and res.report["peak_memory_mb"] > 0
    assert seen and seen[-1] == 1.0


def test_cancel_and_bad_ports():
    m = mesh_pipe(1.0, 4.0, mesh_size_mm=0.6, quarter=True)
    with pytest.raises(CancelledError):
        solve_flow(m, inlet_flow_m3s=Q, outlet_pressure_pa={"outlet_1": 0.0}, cancelled=lambda: True)
    with pytest.raises(InputError, match="outlet_pressure_pa"):
        solve_flow(m, inlet_flow_m3s=Q, outlet_pressure_pa={})
    m.ports = m.ports[:1]
    with pytest.raises(InputError, match="ports"):
        solve_flow(m)


@pytest.fixture(scope="module")
def small_mesh_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("flowmesh") / "pipe.npz"
    mesh_pipe(1.0, 4.0, mesh_size_mm=0.45, quarter=True).save(path)
    return path


def test_worker_serial_and_mpi_agree(small_mesh_file, tmp_path):
    from mechanics.flow_worker import FlowWorker

    # Default boundary values: 93 mmHg inlet and an implicit resistance outlet (its rank-one Jacobian
    # term is applied across ranks).
    seen = []
    one = FlowWorker(small_mesh_file, tmp_path / "serial", progress=lambda f, m: seen.append(f))
    serial = one.start().wait(timeout=600)
    two = FlowWorker(small_mesh_file, tmp_path / "mpi", n_procs=2).start().wait(timeout=600)
    assert two["report"]["ranks"] == 2 and serial["report"]["ranks"] == 1
    assert two["dofs"] == serial["dofs"]
    # Same discrete problem, direct solves: flow and outlet pressure agree to solver tolerance.
    q1, q2 = (r["flows_m3s"]["outlet_1"] for r in (serial, two))
    assert q1 > 0 and q2 == pytest.approx(q1, rel=1e-6)
    assert two["ffr_min"] == pytest.approx(serial["ffr_min"], abs=1e-7)
    assert seen and max(seen) == 1.0
    assert (tmp_path / "mpi" / "result.vtu").is_file() and (tmp_path / "serial" / "wall.vtp").is_file()


def test_worker_cancel(small_mesh_file, tmp_path):
    import time

    from mechanics.flow_worker import FlowWorker

    w = FlowWorker(small_mesh_file, tmp_path / "c", extra_args=["--inlet-flow", str(Q), "--outlet-pressure",
                                                               "outlet_1=0"]).start()
    time.sleep(1.0)
    w.cancel()
    with pytest.raises(CancelledError):
        w.wait(timeout=60)
    assert w.proc.returncode != 0
