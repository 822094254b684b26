"""Outlet boundary conditions shared by the 1D and 3D flow models."""
import numpy as np
import pytest

from mechanics.physiology import MMHG, CarreauYasuda, Physiology, poiseuille_resistance


def test_murray_flow_gives_the_stated_wall_shear_stress():
    phys = Physiology()
    r_mm = np.array([0.5, 1.0, 1.5])
    q = phys.resting_flow(r_mm)
    tau = 4 * phys.mu * q / (np.pi * (r_mm * 1e-3) ** 3)  # Poiseuille wall shear stress
    np.testing.assert_allclose(tau, 1.5, rtol=1e-12)
    np.testing.assert_allclose(q[1] / q[0], 8.0)  # Q ~ r^3
    # 1.5 mm LAD-sized outlet: resting ~68 ml/min, hyperaemic ~4.2x that
    assert q[2] * 6e7 == pytest.approx(68.2, rel=0.01)
    np.testing.assert_allclose(phys.hyperaemic_flow(r_mm) / q, 1 / 0.24)


def test_outlet_resistance_carries_target_flow_at_aortic_pressure():
    phys = Physiology(p_aortic_mmhg=100.0, p_venous_mmhg=5.0)
    r = phys.outlet_resistances([1.0])
    assert (95 * MMHG) / r[0] == pytest.approx(phys.hyperaemic_flow([1.0])[0], rel=1e-12)
    with pytest.raises(ValueError, match="positive"):
        phys.outlet_resistances([1.0, 0.0])


def test_carreau_yasuda_limits_and_poiseuille():
    cy = CarreauYasuda()
    assert cy.viscosity(0.0) == pytest.approx(0.056)
    assert cy.viscosity(1e6) == pytest.approx(0.00345, rel=1e-3)
    assert poiseuille_resistance(0.1, 0.002) == pytest.approx(8 * 3.5e-3 * 0.1 / (np.pi * 0.002 ** 4))
