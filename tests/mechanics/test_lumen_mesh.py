"""Lumen tet meshes: tags, volumes, ports, radius sizing, open and capped surfaces."""
from __future__ import annotations

import numpy as np
import pytest
import pyvista as pv

from imaging.errors import InputError
from imaging.lumen_mesh import SYMMETRY_TAG, LumenMesh, mesh_lumen_surface
from imaging.lumen_shapes import fda_profile, mesh_pipe, stenosis_profile
from imaging.ports import INLET, OUTLET, Port


def _tet_volume(m: LumenMesh) -> float:
    p = m.points[m.cells[:, :4]]
    return float(np.abs(np.einsum("ij,ij->i", np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), p[:, 3] - p[:, 0])).sum() / 6)


def _tri_area(m: LumenMesh, tag: int) -> float:
    return float(m.boundary(tag).area)


def test_pipe_tags_volume_and_order2(tmp_path):
    m = mesh_pipe(2.0, 10.0, mesh_size_mm=0.7, quarter=True, order=2)
    assert set(np.unique(m.facet_tags)) == {1, 2, 3, SYMMETRY_TAG}
    assert m.order == 2 and m.cells.shape[1] == 10
    # Quarter of pi R^2 L = 31.42 mm3; straight-sided tets of a curved wall lose O(h^2) (< 3 %).
    assert _tet_volume(m) == pytest.approx(np.pi * 4 * 10 / 4, rel=0.03)
    assert _tri_area(m, 2) == pytest.approx(np.pi, rel=0.03)
    m.save(tmp_path / "m.npz")
    back = LumenMesh.load(tmp_path / "m.npz")
    assert back.n_tets == m.n_tets and [p.name for p in back.ports] == ["inlet", "outlet_1"]


def test_radius_sizing_refines_the_lesion():
    from imaging.lumen_shapes import mesh_stenosed_tube

    m = mesh_stenosed_tube(1.5, 20.0, 0.6, 6.0, quarter=True, radius_fraction=0.5)
    g = m.to_pyvista().compute_cell_sizes()
    z = g.cell_centers().points[:, 2]
    vol = np.asarray(g.cell_data["Volume"])
    # Element size follows the local radius: throat tets (r = 0.6 mm) far smaller than healthy ones (1.5 mm).
    assert np.median(vol[np.abs(z - 10) < 1]) < 0.3 * np.median(vol[z < 4])


def test_profiles_and_bad_input():
    prof = stenosis_profile(2.0, 20.0, 0.5, 6.0)
    assert prof[:, 1].min() == pytest.approx(1.0, rel=1e-9)
    fda = fda_profile("sudden_expansion")
    assert fda[:, 1].min() == 2.0 and np.isclose(fda[1, 0] - fda[2, 0], -22.685, atol=1e-3)
    with pytest.raises(InputError, match="severity"):
        stenosis_profile(2.0, 20.0, 1.2, 6.0)
    with pytest.raises(InputError, match="config"):
        fda_profile("bend")
    with pytest.raises(InputError, match="ports"):
        mesh_lumen_surface(pv.Sphere(), [])


def _pipe_ports(r=1.5, length=12.0):
    return [Port("inlet", INLET, (0, 0, 0), (0, 0, -1), r, 2), Port("outlet_1", OUTLET, (0, 0, length), (0, 0, 1), r, 3)]


@pytest.mark.parametrize("capped", [False, True])
def test_open_and_capped_surfaces(capped):
    surf = pv.Cylinder(center=(0, 0, 6), direction=(0, 0, 1), radius=1.5, height=12, resolution=40,
                       capping=capped).triangulate().subdivide(1)
    m = mesh_lumen_surface(surf, _pipe_ports(), mesh_size_mm=0.5)
    assert set(np.unique(m.facet_tags)) == {1, 2, 3}
    exact = 40 * 0.5 * 1.5 ** 2 * np.sin(2 * np.pi / 40) * 12  # the 40-gon prism
    # The surface triangles are kept (only the volume is meshed): the tets fill the prism exactly
    # (float32 points).
    assert np.sum(m.facet_tags == 1) == 320  # the 40 x 2 x 4 wall triangles of the input
    assert _tet_volume(m) == pytest.approx(exact, rel=1e-6)
    assert _tri_area(m, 2) == pytest.approx(exact / 12, rel=1e-6)


@pytest.mark.slow
def test_real_coronary_mesh():
    """dfemtoolz coronary (14,336 triangles, 1,530 mm3, outlets r 0.36-0.68 mm) at the default sizing."""
    from tests.vessel_cases import coronary_files, coronary_lumen, coronary_mesh

    lumen = coronary_lumen()
    m = coronary_mesh()
    assert set(np.unique(m.facet_tags)) == {p.tag for p in lumen.ports} | {1}
    # Surface alone (no size function) gives 22k tets; the default radius sizing 55k (gmsh 4.15).
    # Far more is the over-refinement that made this mesh take over 12 minutes.
    assert 40_000 < m.n_tets < 250_000
    p = m.points[m.cells]
    signed = np.einsum("ij,ij->i", np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), p[:, 3] - p[:, 0]) / 6
    assert signed.min() > 0
    assert signed.sum() == pytest.approx(lumen.surface.volume, rel=0.01)
    # Netgen optimisation removes the flat tets between four surface nodes (0.0015 without it).
    assert m.to_pyvista().cell_quality("scaled_jacobian").cell_data["scaled_jacobian"].min() > 0.01
    _, caps = coronary_files()
    assert _tri_area(m, 2) == pytest.approx(16.3, rel=0.02)  # BC0, the inlet cap
    outlets = [q for q in m.ports if q.tag > 2]
    for cap in (pv.read(f) for f in caps[1:]):
        port = min(outlets, key=lambda q: np.linalg.norm(q.center - np.asarray(cap.center)))
        # The caps' triangles are the lumen's own (bitwise equal vertices): the areas agree exactly.
        assert _tri_area(m, port.tag) == pytest.approx(cap.area, rel=1e-6), port.name
        outlets.remove(port)
