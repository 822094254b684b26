"""1D vs 3D FFR on a straight cosine-stenosed tube at three severities (issue 7, section 4).

The 3D side solves Navier-Stokes on a quarter model of the tube
(``imaging.lumen_shapes.mesh_stenosed_tube``: the same cosine as
``mechanics.reduced.stenosed_tube_radius``; R 1.5 mm, L 30 mm, lesion 8 mm) with
the same Murray-law hyperaemic outlet resistance and 93 mmHg at the inlet
(inlet Reynolds number ~500-580). Published 1D-vs-3D agreement is about
0.00 +/- 0.03 in FFR (e.g. Blanco et al., J Biomech 2018; Boileau et al., Int J
Numer Method Biomed Eng 2015), hence the 0.03 bound.

Measured (benchmarks/study_ffr_1d_vs_3d.py, h = 0.3 r): 3D 0.952 / 0.908 / 0.814
at 30 / 40 / 50 %; 1D Poiseuille+expansion 0.947 / 0.897 / 0.798 (within 0.016);
1D Young-Tsai 0.936 / 0.879 / 0.770 (0.044 too low at 50 %: its viscous term
overestimates the loss of this smooth lesion). The 40 % 3D value is the same at
h = 0.45 r and 0.3 r (mesh-converged to 1e-4); 50 % needs 0.3 r for Newton to
reach full convection.
"""
from __future__ import annotations

import pytest

from imaging.lumen_shapes import mesh_stenosed_tube
from mechanics.flow import solve_flow

pytestmark = [pytest.mark.fem, pytest.mark.slow]

RADIUS_MM, LENGTH_MM, LESION_MM = 1.5, 30.0, 8.0
#: severity -> element size as a fraction of the local radius (the coarsest that converges).
SEVERITIES = {0.3: 0.45, 0.4: 0.45, 0.5: 0.3}


def ffr_3d(severity: float, radius_fraction: float) -> float:
    m = mesh_stenosed_tube(RADIUS_MM, LENGTH_MM, severity, LESION_MM, quarter=True, radius_fraction=radius_fraction,
                           wall_fraction=0.6)
    return solve_flow(m).ffr_min


def ffr_1d(severity: float, model: str) -> float:
    from mechanics.reduced import solve_ffr_1d, stenosed_tube_tree

    tree = stenosed_tube_tree(LENGTH_MM, RADIUS_MM, severity, LESION_MM)
    return float(solve_ffr_1d(tree, stenosis_model=model, min_stenosis=0.1).per_outlet["outlet_1"])


@pytest.fixture(scope="module")
def table():
    return {s: (ffr_3d(s, rf), ffr_1d(s, "poiseuille+expansion"), ffr_1d(s, "young-tsai"))
            for s, rf in SEVERITIES.items()}


def test_ffr_1d_matches_3d_within_0_03(table):
    for s, (f3, f_pe, f_yt) in table.items():
        assert abs(f3 - f_pe) < 0.03, (s, f3, f_pe)
        if s <= 0.4:
            assert abs(f3 - f_yt) < 0.03, (s, f3, f_yt)
        else:  # Young-Tsai: conservative (too low) by more than 0.03 on this smooth lesion
            assert f3 - 0.06 < f_yt < f3 - 0.03, (s, f3, f_yt)


def test_3d_ffr_falls_with_severity(table):
    f3 = [table[s][0] for s in sorted(table)]
    assert all(a > b for a, b in zip(f3, f3[1:])), f3
    assert 0.93 < f3[0] < 0.97 and 0.78 < f3[-1] < 0.85, f3
