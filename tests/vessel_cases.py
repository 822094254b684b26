"""Real vessel cases shared by the vessel/centerline/FFR tests, computed once per test process.

Coronary: dfemtoolz m1_fluid.stl with its caps BC0 (inlet) .. BC6. Aorta:
vmtk's aorta-surface.vtp (RAS, as stored) and vmtk's own centerlines.
"""
from __future__ import annotations

from functools import lru_cache

from tests.conftest import data_path

CORONARY_INLET_DIAMETER_MM = 4.56  # BC0.stl: 16.3 mm2 (shared/data/README.md)


def coronary_files():
    folder = data_path("dfemtoolz", "coronary")
    return folder / "m1_fluid.stl", [folder / f"BC{i}.stl" for i in range(7)]


@lru_cache(maxsize=None)
def coronary_lumen():
    from imaging.vessels import load_lumen

    stl, caps = coronary_files()
    return load_lumen(stl, caps=caps)


@lru_cache(maxsize=None)
def coronary_tree():
    from imaging.centerline import extract_centerlines

    return extract_centerlines(coronary_lumen())


@lru_cache(maxsize=None)
def aorta_lumen():
    from imaging.vessels import load_lumen

    return load_lumen(data_path("vmtk_aorta", "aorta-surface.vtp"))


@lru_cache(maxsize=None)
def aorta_tree():
    from imaging.centerline import extract_centerlines

    return extract_centerlines(aorta_lumen())


@lru_cache(maxsize=None)
def coronary_mesh(radius_fraction: float = 0.35):
    """Tagged tet mesh of the coronary lumen (default sizing: ~55k tets, ~10 s); shared, do not modify."""
    from imaging.lumen_mesh import mesh_lumen_surface

    lumen = coronary_lumen()
    return mesh_lumen_surface(lumen.surface, lumen.ports, radius_fraction=radius_fraction)
