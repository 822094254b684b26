"""Blood and coronary physiology shared by the 3D flow solver and the 1D model.

Both models use the same fluid and the same outlet boundary conditions, so
their FFR can be compared one to one.

Outlet resistances (hyperaemic, lumped microvascular)
-----------------------------------------------------
1. Resting flow through an outlet of radius r follows Murray's law in its
   wall-shear-stress form: a vessel tree that minimises pumping plus blood
   volume cost carries Q proportional to r**3 at a constant wall shear stress
   tau = 4 mu Q / (pi r**3) (Murray, PNAS 12:207-214, 1926; Zamir,
   J Gen Physiol 69:449-461, 1977). With tau_rest = 1.5 Pa (the mean
   physiological arterial wall shear stress quoted for Murray-law trees, e.g.
   Kamiya & Togawa, Am J Physiol 239:H14-H21, 1980):
   Q_rest = tau_rest * pi * r**3 / (4 mu).
2. Maximal hyperaemia (adenosine) lowers coronary microvascular resistance to
   about 0.24 of its resting value (Wilson et al., Circulation 82:1595-1606,
   1990), so at the same driving pressure Q_hyp = Q_rest / 0.24.
3. The outlet resistance is what carries Q_hyp from the mean aortic pressure
   (93 mmHg default) to the venous pressure with no epicardial loss:
   R = (P_a - P_v) / Q_hyp. A stenosis upstream then lowers the flow and the
   distal pressure, which is exactly what FFR measures.

Units: SI inside (Pa, m, m3/s, Pa s/m3); helpers take millimetres where noted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MMHG = 133.322387415  # Pa
RHO_BLOOD = 1060.0  # kg/m3
MU_BLOOD = 3.5e-3  # Pa s (Newtonian default)
P_AORTIC_MEAN_MMHG = 93.0
P_VENOUS_MMHG = 0.0
TAU_REST_PA = 1.5
HYPERAEMIC_RESISTANCE_FRACTION = 0.24
FFR_THRESHOLD = 0.80


@dataclass(frozen=True)
class CarreauYasuda:
    """Shear-thinning blood viscosity (Cho & Kensey, Biorheology 28:241-262, 1991)."""

    mu0: float = 0.056  # Pa s
    mu_inf: float = 0.00345  # Pa s
    lam: float = 3.313  # s
    n: float = 0.3568
    a: float = 2.0

    def viscosity(self, shear_rate):
        """mu(gamma_dot) in Pa s; works on numbers and numpy arrays."""
        g = np.asarray(shear_rate, dtype=float)
        return self.mu_inf + (self.mu0 - self.mu_inf) * (1.0 + (self.lam * g) ** self.a) ** ((self.n - 1.0) / self.a)


@dataclass(frozen=True)
class Physiology:
    """Boundary-condition physiology; every number is stated and overridable."""

    rho: float = RHO_BLOOD
    mu: float = MU_BLOOD
    p_aortic_mmhg: float = P_AORTIC_MEAN_MMHG
    p_venous_mmhg: float = P_VENOUS_MMHG
    tau_rest_pa: float = TAU_REST_PA
    hyperaemic_resistance_fraction: float = HYPERAEMIC_RESISTANCE_FRACTION

    @property
    def p_aortic(self) -> float:
        return self.p_aortic_mmhg * MMHG

    @property
    def p_venous(self) -> float:
        return self.p_venous_mmhg * MMHG

    def resting_flow(self, radius_mm) -> np.ndarray:
        """Murray-law resting flow (m3/s) through outlets of the given radii (mm)."""
        r = np.asarray(radius_mm, dtype=float) * 1e-3
        if np.any(~np.isfinite(r)) or np.any(r <= 0):
            raise ValueError(f"outlet radii must be positive, got {np.asarray(radius_mm).tolist()}")
        return self.tau_rest_pa * np.pi * r ** 3 / (4.0 * self.mu)

    def hyperaemic_flow(self, radius_mm) -> np.ndarray:
        """Target hyperaemic flow (m3/s) per outlet with no epicardial disease."""
        return self.resting_flow(radius_mm) / self.hyperaemic_resistance_fraction

    def outlet_resistances(self, radius_mm) -> np.ndarray:
        """Hyperaemic microvascular resistance (Pa s/m3) per outlet, P_v downstream."""
        return (self.p_aortic - self.p_venous) / self.hyperaemic_flow(radius_mm)

    def to_dict(self) -> dict:
        return asdict(self)


def poiseuille_resistance(length_m: float, radius_m: float, mu: float = MU_BLOOD) -> float:
    """Viscous resistance 8 mu L / (pi r^4) of a straight tube (Pa s/m3)."""
    if radius_m <= 0 or length_m < 0:
        raise ValueError(f"bad tube: length {length_m} m, radius {radius_m} m")
    return 8.0 * mu * length_m / (np.pi * radius_m ** 4)
