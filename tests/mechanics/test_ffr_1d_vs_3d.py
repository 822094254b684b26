"""1D vs 3D FFR on a straight cosine-stenosed tube (issue 7, section 4).

Only the 40 % diameter lesion is asserted for now: the 55 % and 70 % 3D
solves did not converge reliably on this mesh yet (issue 7 stays open).

The 3D side solves Navier-Stokes on a quarter model of the same tube
(``imaging.lumen_shapes.mesh_stenosed_tube``: same cosine as
``mechanics.reduced.stenosed_tube_radius``) with the same Murray-law
hyperaemic outlet resistance and 93 mmHg at the inlet. Published 1D-vs-3D
agreement is about 0.00 +/- 0.03 in FFR (e.g. Blanco et al., J Biomech 2018;
Boileau et al., Int J Numer Method Biomed Eng 2015), hence the 0.03 bound.
"""
from __future__ import annotations

import pytest

from imaging.lumen_shapes import mesh_stenosed_tube
from mechanics.flow import solve_flow

pytestmark = [pytest.mark.fem, pytest.mark.slow]

RADIUS_MM, LENGTH_MM, LESION_MM = 1.5, 30.0, 8.0
SEVERITIES = (0.4,)


def ffr_3d(severity: float, radius_fraction: float = 0.45) -> float:
    m = mesh_stenosed_tube(RADIUS_MM, LENGTH_MM, severity, LESION_MM, quarter=True, radius_fraction=radius_fraction,
                           wall_fraction=0.6)
    return solve_flow(m).ffr_min


def ffr_1d(severity: float) -> float:
    from mechanics.reduced import solve_ffr_1d, stenosed_tube_tree

    tree = stenosed_tube_tree(LENGTH_MM, RADIUS_MM, severity, LESION_MM)
    return float(solve_ffr_1d(tree).per_outlet["outlet_1"])


@pytest.fixture(scope="module")
def table():
    return {s: (ffr_3d(s), ffr_1d(s)) for s in SEVERITIES}


def test_ffr_1d_matches_3d_within_0_03(table):
    for s, (f3, f1) in table.items():
        assert abs(f3 - f1) < 0.03, (s, f3, f1)
