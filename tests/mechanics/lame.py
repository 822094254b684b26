"""Thick-walled sphere under internal pressure (Lame): gmsh octant mesh and exact solution."""
from __future__ import annotations

import numpy as np

INNER, OUTER, SYM_X, SYM_Y, SYM_Z = 1, 2, 3, 4, 5


def exact_radial_mm(r, a_mm, b_mm, p_pa, E_pa, nu):
    """u_r(r) of a thick sphere, inner radius a, outer b, internal pressure p (small strain)."""
    return p_pa * a_mm**3 / (E_pa * (b_mm**3 - a_mm**3)) * ((1 - 2 * nu) * r + (1 + nu) * b_mm**3 / (2 * r**2))


def octant_mesh(a_mm: float, b_mm: float, h_mm: float, order: int = 1):
    """Octant of a spherical shell (x, y, z >= 0), tagged facets; returns (mesh, cells, facets)."""
    import gmsh

    from mechanics.fem_compat import mesh_from_gmsh

    gmsh.initialize()
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("lame")
        occ = gmsh.model.occ
        outer = occ.addSphere(0, 0, 0, b_mm)
        inner = occ.addSphere(0, 0, 0, a_mm)
        shell, _ = occ.cut([(3, outer)], [(3, inner)])
        box = occ.addBox(0, 0, 0, 2 * b_mm, 2 * b_mm, 2 * b_mm)
        part, _ = occ.intersect(shell, [(3, box)])
        occ.synchronize()
        vol = part[0][1]
        gmsh.model.addPhysicalGroup(3, [vol], 1)
        tags = {INNER: [], OUTER: [], SYM_X: [], SYM_Y: [], SYM_Z: []}
        for dim, tag in gmsh.model.getBoundary(part, oriented=False):
            c = np.array(gmsh.model.occ.getCenterOfMass(dim, tag))
            if abs(c[0]) < 1e-6:
                tags[SYM_X].append(tag)
            elif abs(c[1]) < 1e-6:
                tags[SYM_Y].append(tag)
            elif abs(c[2]) < 1e-6:
                tags[SYM_Z].append(tag)
            elif np.linalg.norm(c) < 0.5 * (a_mm + b_mm):
                tags[INNER].append(tag)
            else:
                tags[OUTER].append(tag)
        for key, surfaces in tags.items():
            gmsh.model.addPhysicalGroup(2, surfaces, key)
        gmsh.option.setNumber("Mesh.CharacteristicLengthMax", h_mm)
        gmsh.option.setNumber("Mesh.CharacteristicLengthMin", 0.5 * h_mm)
        gmsh.model.mesh.generate(3)
        if order > 1:
            gmsh.model.mesh.setOrder(order)
        return mesh_from_gmsh(gmsh.model)
    finally:
        gmsh.finalize()
