"""Surface-scan import, units, topology report, repair and decimation on real meshes.

Data: the dfemtoolz tooth and coronary STLs (mm, closed) and VTK's fran_cut
laser face scan (metres, textured, open) from ../shared/data. PLY-with-colour
and OBJ-with-texture files are written from fran in tmp_path, since the
shared data holds none.
"""
from __future__ import annotations

import numpy as np
import pytest
import trimesh
from PIL import Image

from imaging.errors import InputError, MeshError
from imaging.meshing import mesh_report
from imaging.surface import (
    boundary_loops, decimate_surface, guess_units, inspect_surface, load_surface, repair_surface,
)
from tests.conftest import data_path

#: Enclosed volumes (mm3) from shared/data/README.md; the README rounds to 0.1 mm3.
TOOTH_VOLUMES_MM3 = {"1": 13.6, "2": 354.0, "3": 146.6, "4": 65.1}


@pytest.fixture(scope="module")
def fran():
    return load_surface(data_path("vtk_data", "fran_cut.vtk"))


@pytest.mark.parametrize("part", sorted(TOOTH_VOLUMES_MM3))
def test_tooth_stl_import_is_closed_and_in_mm(part):
    scan = load_surface(data_path("dfemtoolz", "tooth", f"{part}.stl"))
    rep = mesh_report(scan.surface)
    # STL repeats every corner; merged, the tooth parts are closed 2-manifolds.
    assert rep["watertight"] and rep["non_manifold_edges"] == 0
    assert rep["volume_mm3"] == pytest.approx(TOOTH_VOLUMES_MM3[part], abs=0.06)
    # 5..25 mm across: as mm a tooth, as cm a bone; kept mm but flagged uncertain.
    assert scan.units.units == "mm" and not scan.units.confident
    assert any("units uncertain" in w for w in scan.warnings)


def test_coronary_stl_matches_readme():
    scan = load_surface(data_path("dfemtoolz", "coronary", "m1_fluid.stl"))
    rep = mesh_report(scan.surface)
    assert (rep["n_points"], rep["n_faces"]) == (7170, 14336)
    assert rep["volume_mm3"] == pytest.approx(1530, rel=0.002)
    assert rep["area_mm2"] == pytest.approx(2369, rel=0.002)
    assert scan.units.units == "mm" and scan.units.confident and not scan.warnings
    np.testing.assert_allclose(rep["bounds"], [-35.0, 37.3, -42.6, 32.9, 62.6, 134.7], atol=0.06)


def test_fran_is_read_as_metres_with_texture_colours(fran):
    s = fran.surface
    assert fran.units.units == "m" and fran.units.scale_to_mm == 1000.0
    # README: 0.106 x 0.154 x 0.123 m.
    np.testing.assert_allclose(np.ptp(np.asarray(s.points), axis=0), [105.6, 153.6, 123.1], atol=0.1)
    assert fran.texture_file == "fran_cut.png" and fran.has_colors
    rgb = np.asarray(s.point_data["RGB"])
    assert rgb.dtype == np.uint8 and rgb.shape == (2205, 3)
    # VTK texture coordinates start at the image's bottom-left; PIL rows start at the top.
    image = np.asarray(Image.open(data_path("vtk_data", "fran_cut.png")).convert("RGB"))
    h, w = image.shape[:2]
    uv = np.asarray(s.point_data["TCoords"])
    expected = image[np.rint((1 - uv[:, 1]) * (h - 1)).astype(int), np.rint(uv[:, 0] * (w - 1)).astype(int)]
    np.testing.assert_array_equal(rgb, expected)
    assert rgb.astype(float).mean() > 60  # the face, not the black background around it
    loops = boundary_loops(s)
    assert len(loops) == 1 and loops[0]["n_edges"] == 184  # one open border, no holes


def test_units_guess_rules():
    assert guess_units(0.1536).units == "m"
    assert guess_units(72.3).units == "mm" and guess_units(72.3).confident
    ambiguous = guess_units(11.3)  # footbones.ply: 11.3 units across
    assert ambiguous.units == "mm" and not ambiguous.confident
    assert guess_units(0.5, b"binary STL UNITS=mm").units == "mm"  # an explicit tag wins over size
    assert guess_units(150.0, b"comment units: meters").units == "m"
    with pytest.raises(InputError):
        guess_units(0.0)


def test_ply_vertex_colours_round_trip(fran, tmp_path):
    s = fran.surface
    faces = s.faces.reshape(-1, 4)[:, 1:]
    rgb = np.asarray(s.point_data["RGB"])
    mesh = trimesh.Trimesh(np.asarray(s.points), faces, vertex_colors=np.hstack([rgb, np.full((len(rgb), 1), 255)]),
                           process=False)
    path = tmp_path / "face.ply"
    path.write_bytes(trimesh.exchange.ply.export_ply(mesh))
    back = load_surface(path)
    assert back.units.units == "mm" and back.has_colors
    np.testing.assert_array_equal(np.asarray(back.surface.point_data["RGB"]), rgb)
    np.testing.assert_allclose(np.asarray(back.surface.points), np.asarray(s.points), atol=1e-4)


def test_obj_texture_is_baked_like_the_vtk_texture(fran, tmp_path):
    s = fran.surface
    faces = s.faces.reshape(-1, 4)[:, 1:]
    uv = np.asarray(s.point_data["TCoords"])
    image = Image.open(data_path("vtk_data", "fran_cut.png")).convert("RGB")
    visual = trimesh.visual.TextureVisuals(uv=uv, image=image)
    mesh = trimesh.Trimesh(np.asarray(s.points) / 1000.0, faces, visual=visual, process=False)
    mesh.export(tmp_path / "face.obj")
    back = load_surface(tmp_path / "face.obj")
    assert back.units.units == "m" and back.has_colors and back.texture_file
    assert back.surface.n_cells == 4224
    # Same texture, same UV (OBJ keeps 8 digits), nearest texel: the colours agree.
    # Match by position since the OBJ reader may order vertices differently.
    from scipy.spatial import cKDTree

    _, idx = cKDTree(np.asarray(s.points)).query(np.asarray(back.surface.points))
    same = np.all(np.asarray(back.surface.point_data["RGB"]) == np.asarray(s.point_data["RGB"])[idx], axis=1)
    assert same.mean() > 0.99


def test_inspect_and_repair_a_broken_tooth():
    surface = load_surface(data_path("dfemtoolz", "tooth", "3.stl")).surface
    faces = surface.faces.reshape(-1, 4)[:, 1:]
    points = np.asarray(surface.points)
    ring = np.any(faces == 100, axis=1)  # punch a hole: drop the 1-ring of vertex 100
    kept = faces[~ring]
    fin = [[kept[10, 0], kept[10, 1], len(points)]]  # a third face on one edge
    broken_pts = np.vstack([points, points[kept[10, 0]] + [0.0, 0.0, 1.0]])
    broken_faces = np.vstack([kept, kept[:5], fin, [[1, 1, 2]]])
    import pyvista as pv

    broken = pv.PolyData(broken_pts, np.hstack([np.full((len(broken_faces), 1), 3), broken_faces]).ravel())
    before = inspect_surface(broken)
    assert (before["duplicate_faces"], before["degenerate_faces"], before["non_manifold_edges"]) == (5, 1, 1)
    assert before["small_holes"] >= 1 and not before["watertight"]
    assert len(before["repairs_possible"]) == 4
    repaired, report = repair_surface(broken)
    done = report["done"]
    assert done["duplicate_faces_removed"] == 5 and done["degenerate_faces_removed"] == 1
    assert done["non_manifold_faces_removed"] == 1 and done["holes_filled"] == 1
    assert done["unused_vertices_removed"] == 2  # the fin apex and the hole's centre vertex
    assert report["after"]["watertight"] and report["after"]["repairs_possible"] == []
    # Closing a 5-triangle hole (0.7 mm radius) changes the enamel volume by well under 1 %.
    assert mesh_report(repaired)["volume_mm3"] == pytest.approx(mesh_report(surface)["volume_mm3"], rel=0.01)
    with pytest.raises(MeshError):
        repair_surface(pv.PolyData(points))


def test_open_scan_border_is_not_filled(fran):
    repaired, report = repair_surface(fran.surface)
    assert report["after"]["holes"] == 1 and report["done"]["holes_filled"] == 0
    assert repaired.n_cells == fran.surface.n_cells


def test_decimation_keeps_colour(fran):
    s = fran.surface
    small = decimate_surface(s, 1000)
    assert abs(small.n_cells - 1000) <= 20
    rgb = np.asarray(small.point_data["RGB"])
    assert rgb.dtype == np.uint8 and len(rgb) == small.n_points
    # Interpolated colours stay those of the face there: compared with the nearest
    # original vertex, the median difference is a few grey levels (of 255).
    from scipy.spatial import cKDTree

    _, idx = cKDTree(np.asarray(s.points)).query(np.asarray(small.points))
    diff = np.abs(rgb.astype(int) - np.asarray(s.point_data["RGB"])[idx].astype(int))
    assert np.median(diff) <= 6
    # Shape kept: bounds within 1 mm of the 154 mm face.
    np.testing.assert_allclose(small.bounds, s.bounds, atol=1.0)
    with pytest.raises(InputError):
        decimate_surface(s, 0)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_surface(tmp_path / "missing.stl")
    (tmp_path / "x.dae").write_text("nope")
    with pytest.raises(InputError, match="unsupported"):
        load_surface(tmp_path / "x.dae")
    (tmp_path / "empty.stl").write_bytes(b"")
    with pytest.raises(InputError):
        load_surface(tmp_path / "empty.stl")
    with pytest.raises(InputError, match="--units"):
        load_surface(data_path("dfemtoolz", "tooth", "1.stl"), units="furlong")
