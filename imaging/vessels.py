"""Vessel lumen: from an angiogram (seeded region growing + level set) or a lumen surface with its ports.

A lumen surface may come open at its ends (each boundary loop is a port),
capped with separate cap files (each cap is a port), or closed: then flat
caps are detected (planar regions bounded by a crease), and failing that the
rounded ends are found as the tips of the medial axis. The inlet is the
largest port unless given. Ports follow ``imaging.ports`` (names ``inlet``,
``outlet_1``...; tags 2, 3, ...). Coordinates stay the input's (mm).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pyvista as pv

from imaging.errors import InputError, SegmentationError
from imaging.ports import FIRST_OUTLET_TAG, INLET, INLET_TAG, OUTLET, Port

log = logging.getLogger(__name__)

SURFACE_SUFFIXES = (".stl", ".vtp", ".vtk", ".ply", ".obj")


@dataclass
class Lumen:
    """A closed lumen surface with its ports; ``cap_cells`` marks cells that close a port (not wall)."""

    surface: pv.PolyData
    ports: list[Port]
    cap_cells: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    port_method: str = ""
    voronoi: Optional[object] = field(default=None, repr=False)  # cached imaging.centerline.VoronoiGraph

    @property
    def inlet(self) -> Port:
        return next(p for p in self.ports if p.kind == INLET)

    @property
    def outlets(self) -> list[Port]:
        return [p for p in self.ports if p.kind == OUTLET]

    def wall_surface(self) -> pv.PolyData:
        """The surface without its cap cells."""
        if not len(self.cap_cells) or not self.cap_cells.any():
            return self.surface
        return self.surface.extract_cells(np.flatnonzero(~self.cap_cells)).extract_surface(algorithm="dataset_surface")


def read_surface(path: Union[str, Path]) -> pv.PolyData:
    """Read a triangulated surface (STL/VTP/VTK/PLY/OBJ, mm); InputError if unreadable or empty."""
    path = Path(path)
    if path.suffix.lower() not in SURFACE_SUFFIXES:
        raise InputError(f"{path}: not a surface file (use {', '.join(SURFACE_SUFFIXES)})")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        mesh = pv.read(path)
    except Exception as exc:  # VTK readers raise many kinds
        raise InputError(f"{path}: cannot read surface ({exc})") from exc
    if not isinstance(mesh, pv.PolyData):
        mesh = mesh.extract_surface()
    if mesh.n_cells == 0 or mesh.n_points < 4:
        raise InputError(f"{path}: empty surface")
    return mesh.triangulate().clean(tolerance=0.0)


def _boundary_loops(surface: pv.PolyData) -> list[np.ndarray]:
    """Boundary edge loops as ordered point-id arrays."""
    faces = surface.faces.reshape(-1, 4)[:, 1:]
    e = np.sort(np.vstack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    if np.any(counts > 2):
        raise InputError(f"lumen surface is non-manifold ({int(np.sum(counts > 2))} edges shared by 3+ triangles)")
    bnd = uniq[counts == 1]
    adj: dict[int, list[int]] = {}
    for a, b in bnd:
        adj.setdefault(int(a), []).append(int(b))
        adj.setdefault(int(b), []).append(int(a))
    loops, seen = [], set()
    for start in adj:
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = [v for v in adj[cur] if v != prev and v not in seen]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            seen.add(cur)
            loop.append(cur)
        if len(loop) >= 3:
            loops.append(np.array(loop))
    return loops


def _port_from_rim(rim: np.ndarray, surface_pts: np.ndarray, area: Optional[float] = None,
                   normal: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre, outward normal and equivalent radius of an opening from its rim points."""
    c = rim.mean(axis=0)
    if normal is None:
        _, _, vt = np.linalg.svd(rim - c)
        normal = vt[2]
    n = normal / np.linalg.norm(normal)
    if area is None:  # polygon area of the rim projected on its plane
        d = rim - c
        area = 0.5 * abs(np.sum(np.cross(d, np.roll(d, -1, axis=0)) @ n))
    r = float(np.sqrt(area / np.pi))
    near = surface_pts[np.linalg.norm(surface_pts - c, axis=1) < 3 * r]
    if len(near) and np.dot(c - near.mean(axis=0), n) < 0:
        n = -n
    return c, n, r


def _close_loops(surface: pv.PolyData, loops: list[np.ndarray]) -> tuple[pv.PolyData, np.ndarray]:
    """Cap each boundary loop with a fan to its centroid; returns the closed surface and the cap-cell mask."""
    pts = np.asarray(surface.points)
    faces = [surface.faces.reshape(-1, 4)]
    new_pts = [pts]
    nxt = len(pts)
    for loop in loops:
        new_pts.append(pts[loop].mean(axis=0)[None])
        fan = np.column_stack([np.full(len(loop), 3), loop, np.roll(loop, -1), np.full(len(loop), nxt)])
        faces.append(fan)
        nxt += 1
    closed = pv.PolyData(np.vstack(new_pts), np.vstack(faces).reshape(-1))
    mask = np.zeros(closed.n_cells, bool)
    mask[surface.n_cells:] = True
    return closed, mask


def _match_caps(surface: pv.PolyData, caps: Sequence[pv.PolyData]) -> list[np.ndarray]:
    """Cells of ``surface`` that are the triangles of each cap (matched by vertex positions)."""
    from scipy.spatial import cKDTree

    pts = np.asarray(surface.points)
    kd = cKDTree(pts)
    scale = float(np.ptp(pts, axis=0).max())
    faces = np.sort(surface.faces.reshape(-1, 4)[:, 1:], axis=1)
    lookup = {tuple(f): i for i, f in enumerate(faces)}
    out = []
    for k, cap in enumerate(caps):
        d, ids = kd.query(np.asarray(cap.points))
        if np.max(d) > 1e-5 * scale:
            raise InputError(f"cap {k}: its vertices are not vertices of the lumen surface "
                             f"(max distance {np.max(d):.3g} mm)")
        cf = np.sort(ids[cap.triangulate().faces.reshape(-1, 4)[:, 1:]], axis=1)
        cells = [lookup.get(tuple(f), -1) for f in cf]
        if min(cells) < 0:
            raise InputError(f"cap {k}: triangles do not match the lumen surface's triangles")
        out.append(np.array(cells))
    return out


def _detect_planar_caps(surface: pv.PolyData, crease_deg: float = 30.0, flat_deg: float = 3.0,
                        min_cells: int = 4) -> list[np.ndarray]:
    """Flat cell regions bounded by a crease whose outline is disk-like: the caps of a closed lumen."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    surf = surface.compute_normals(cell_normals=True, point_normals=False, auto_orient_normals=True)
    n = np.asarray(surf.cell_data["Normals"])
    faces = surface.faces.reshape(-1, 4)[:, 1:]
    nc = len(faces)
    e = np.vstack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e.sort(axis=1)
    cell = np.tile(np.arange(nc), 3)
    order = np.lexsort((e[:, 1], e[:, 0]))
    e, cell = e[order], cell[order]
    same = np.all(e[1:] == e[:-1], axis=1)
    a, b = cell[:-1][same], cell[1:][same]
    smooth = np.einsum("ij,ij->i", n[a], n[b]) > np.cos(np.radians(crease_deg))
    g = coo_matrix((np.ones(smooth.sum()), (a[smooth], b[smooth])), shape=(nc, nc))
    ncomp, label = connected_components(g, directed=False)
    counts = np.bincount(label, minlength=ncomp)
    area = np.asarray(surf.compute_cell_sizes(length=False, volume=False).cell_data["Area"])
    total = area.sum()
    caps = []
    for comp in np.flatnonzero((counts >= min_cells) & (counts < 0.2 * nc)):
        cells = np.flatnonzero(label == comp)
        mean_n = (n[cells] * area[cells, None]).sum(0)
        mean_n /= np.linalg.norm(mean_n)
        if np.min(n[cells] @ mean_n) < np.cos(np.radians(flat_deg)) or area[cells].sum() > 0.2 * total:
            continue
        pts = np.asarray(surface.points)[np.unique(faces[cells])]
        r_eq = np.sqrt(area[cells].sum() / np.pi)
        if np.max(np.linalg.norm(pts - pts.mean(0), axis=1)) < 2.0 * r_eq:
            caps.append(cells)
    return caps


def _ports_from_caps(surface: pv.PolyData, caps: list[np.ndarray]) -> list[tuple]:
    surf = surface.compute_normals(cell_normals=True, point_normals=False, auto_orient_normals=True)
    n = np.asarray(surf.cell_data["Normals"])
    area = np.asarray(surf.compute_cell_sizes(length=False, volume=False).cell_data["Area"])
    faces = surface.faces.reshape(-1, 4)[:, 1:]
    pts = np.asarray(surface.points)
    out = []
    for cells in caps:
        a = area[cells]
        normal = (n[cells] * a[:, None]).sum(0)
        ids = np.unique(faces[cells])
        centroid = (pts[faces[cells]].mean(axis=1) * a[:, None]).sum(0) / a.sum()
        out.append((centroid, normal / np.linalg.norm(normal), float(np.sqrt(a.sum() / np.pi)), pts[ids]))
    return out


def _name_ports(found: list[tuple], inlet: Optional[int], keep_order: bool) -> list[Port]:
    """Port objects: the inlet (given index or largest), outlets in input order or by decreasing radius."""
    if inlet is None:
        inlet = int(np.argmax([f[2] for f in found]))
    if not 0 <= inlet < len(found):
        raise InputError(f"inlet index {inlet} out of range ({len(found)} ports found)")
    rest = [i for i in range(len(found)) if i != inlet]
    if not keep_order:
        rest.sort(key=lambda i: -found[i][2])
    ports = [Port("inlet", INLET, found[inlet][0], found[inlet][1], found[inlet][2], INLET_TAG, found[inlet][3])]
    for k, i in enumerate(rest):
        c, nrm, r, rim = found[i]
        ports.append(Port(f"outlet_{k + 1}", OUTLET, c, nrm, r, FIRST_OUTLET_TAG + k, rim))
    return ports


def lumen_from_surface(surface: pv.PolyData, caps: Optional[Sequence[pv.PolyData]] = None,
                       inlet: Optional[int] = None) -> Lumen:
    """Lumen with ports from a surface that is open at its ends, capped with given caps, or closed.

    Parameters
    ----------
    surface : pyvista.PolyData
        Triangulated lumen surface, mm.
    caps : sequence of pyvista.PolyData, optional
        Cap surfaces whose vertices are vertices of ``surface`` (e.g. the
        BC*.stl files of a meshing tool). Outlets keep the caps' order.
    inlet : int, optional
        Index of the inlet among the ports (cap order, or detection order
        sorted by decreasing radius); default: the largest port.

    Returns
    -------
    Lumen

    Raises
    ------
    InputError
        Empty or non-manifold surface, caps that do not match.
    SegmentationError
        Fewer than two ports (no outlet).
    """
    if surface is None or surface.n_cells == 0:
        raise InputError("lumen surface is empty")
    surface = surface.triangulate().clean(tolerance=0.0)
    voronoi = None
    loops = _boundary_loops(surface)
    if loops:
        pts = np.asarray(surface.points)
        found = [(*_port_from_rim(pts[lp], pts), pts[lp]) for lp in loops]
        closed, mask = _close_loops(surface, loops)
        method = "open boundary loops"
    elif caps:
        cells = _match_caps(surface, list(caps))
        closed, mask = surface, np.zeros(surface.n_cells, bool)
        for c in cells:
            mask[c] = True
        found = _ports_from_caps(surface, cells)
        method = "cap files"
    else:
        closed = surface
        cells = _detect_planar_caps(surface)
        mask = np.zeros(surface.n_cells, bool)
        for c in cells:
            mask[c] = True
        found = _ports_from_caps(surface, cells) if len(cells) >= 2 else []
        method = "planar caps"
        if len(found) < 2:
            mask[:] = False
            found, voronoi = _ports_from_medial_tips(surface)
            method = "rounded ends (medial axis tips)"
    if len(found) < 2:
        raise SegmentationError(f"no outlet found on the lumen surface ({len(found)} port(s) by {method})")
    ports = _name_ports(found, inlet, keep_order=(method == "cap files"))
    log.info("lumen: %d ports by %s", len(ports), method)
    return Lumen(closed, ports, mask, method, voronoi)


def _ports_from_medial_tips(surface: pv.PolyData, min_length_radii: float = 3.0) -> tuple[list[tuple], object]:
    """Ends of a closed, rounded lumen: tips of the medial axis (Voronoi graph) farther than
    ``min_length_radii`` radii from the axis already found (shorter ones are surface bumps)."""
    from scipy.sparse.csgraph import dijkstra

    from imaging.centerline import build_voronoi_graph

    g = build_voronoi_graph(surface)
    csg = g.csgraph(weight="length")
    start = int(np.argmax(g.radius))
    d_s, pred_s = dijkstra(csg, indices=start, return_predecessors=True)
    tip0 = int(np.argmax(np.where(np.isfinite(d_s), d_s, -1)))
    dist_tree, pred = dijkstra(csg, indices=tip0, return_predecessors=True)
    tips, tree_nodes = [tip0], {tip0}
    for _ in range(64):
        cand = int(np.argmax(np.where(np.isfinite(dist_tree), dist_tree, -1)))
        path = [cand]
        while path[-1] not in tree_nodes and pred[path[-1]] >= 0:
            path.append(int(pred[path[-1]]))
        r_attach = g.radius[start] if len(tips) == 1 else g.radius[path[-1]]
        euclid = np.min(np.linalg.norm(g.points[list(tree_nodes)] - g.points[cand], axis=1))
        if min(dist_tree[cand], euclid) < min_length_radii * r_attach:
            break
        tips.append(cand)
        tree_nodes.update(path)
        dist_tree = np.minimum(dist_tree, dijkstra(csg, indices=path, min_only=True))
    out = []
    for t in tips:
        back = t  # walk inwards to the centre of the largest sphere touching the end
        while pred_s[back] >= 0 and np.linalg.norm(g.points[back] - g.points[t]) < g.radius[back]:
            back = int(pred_s[back])
        nrm = g.points[t] - g.points[back]
        if np.linalg.norm(nrm) < 1e-9:
            nrm = g.points[t] - g.points[start]
        out.append((g.points[back], nrm / np.linalg.norm(nrm), float(g.radius[back]), np.zeros((0, 3))))
    return out, g


def load_lumen(path: Union[str, Path], caps: Optional[Sequence[Union[str, Path]]] = None,
               inlet: Optional[int] = None) -> Lumen:
    """Read a lumen surface file (and optional cap files) and find its ports (see :func:`lumen_from_surface`)."""
    surface = read_surface(path)
    cap_meshes = [read_surface(c) for c in caps] if caps else None
    try:
        return lumen_from_surface(surface, cap_meshes, inlet)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc


def segment_lumen(image, seeds_mm: Sequence[Sequence[float]], *, roi_mm: Optional[Sequence[float]] = None,
                  edge_fraction: float = 0.4, levelset_iterations: int = 0, progress=None, cancelled=None):
    """Lumen of a contrast angiogram: seeded region growing, optionally refined by a level set.

    1. Confidence-connected region growing from the seeds (SimpleITK) on the
       image smoothed with a 0.5 mm Gaussian gives the lumen intensity (its
       median); the median of a 4-voxel shell around it is the background.
    2. The lumen edge is where the intensity crosses ``background +
       edge_fraction * (lumen - background)``; the region connected to the
       seeds above that level (inside ``roi_mm``) is the lumen.
    3. Optionally a threshold level set (ITK ``ThresholdSegmentationLevelSet``,
       curvature-regularised) started from that region smooths the boundary.

    Parameters
    ----------
    image : SimpleITK.Image or path
        Contrast CT/MR angiogram (bright lumen).
    seeds_mm : sequence of (x, y, z)
        Seed points inside the lumen, physical (LPS) mm.
    roi_mm : (xmin, xmax, ymin, ymax, zmin, zmax), optional
        Box (LPS mm) the lumen may not leave: stops the growth into other vessels.
    edge_fraction : float
        Edge level between background (0) and lumen (1) intensity.
    levelset_iterations : int
        Level-set iterations (0: region growing only).
    progress, cancelled : callables, optional

    Returns
    -------
    SimpleITK.Image
        uint8 mask (1 = lumen) on the image grid.

    Raises
    ------
    InputError
        Unreadable image, a seed outside the image or the ROI.
    SegmentationError
        Nothing grew from the seeds.
    """
    import SimpleITK as sitk

    from imaging.progress import check_cancelled, no_progress

    progress = progress or no_progress
    if not isinstance(image, sitk.Image):
        try:
            image = sitk.ReadImage(str(image), sitk.sitkFloat32)
        except RuntimeError as exc:
            raise InputError(f"{image}: cannot read image ({exc})") from exc
    image = sitk.Cast(image, sitk.sitkFloat32)
    size = np.array(image.GetSize())
    lo, hi = np.zeros(3, int), size - 1
    if roi_mm is not None:
        box = np.asarray(roi_mm, float).reshape(3, 2)
        corners = np.array([[box[0, a], box[1, b], box[2, c]] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
        ijk = np.array([image.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in corners])
        lo = np.clip(np.floor(ijk.min(0)).astype(int), 0, size - 1)
        hi = np.clip(np.ceil(ijk.max(0)).astype(int), 0, size - 1)
    idx = []
    for s in seeds_mm:
        i = np.array(image.TransformPhysicalPointToIndex([float(v) for v in s]))
        if np.any(i < lo) or np.any(i > hi):
            raise InputError(f"seed {list(s)} mm lies outside the image or the ROI")
        idx.append(tuple(int(v) for v in i - lo))
    if not idx:
        raise InputError("segment_lumen needs at least one seed point")
    progress(0.1, "region growing")
    sub = sitk.RegionOfInterest(image, [int(v) for v in hi - lo + 1], [int(v) for v in lo])
    smooth = sitk.SmoothingRecursiveGaussian(sub, 0.5)
    grown = sitk.ConfidenceConnected(smooth, seedList=idx, numberOfIterations=3, multiplier=2.0,
                                     initialNeighborhoodRadius=1, replaceValue=1)
    arr = sitk.GetArrayViewFromImage(smooth)
    g = sitk.GetArrayViewFromImage(grown) > 0
    shell = (sitk.GetArrayViewFromImage(sitk.BinaryDilate(grown, [4, 4, 4])) > 0) & ~g
    if not g.any() or not shell.any():
        raise SegmentationError("region growing from the seeds found no lumen")
    fg, bg = float(np.median(arr[g])), float(np.median(arr[shell]))
    level = bg + edge_fraction * (fg - bg)
    mask = sitk.ConnectedThreshold(smooth, seedList=idx, lower=level, upper=float(arr.max()) + 1.0)
    check_cancelled(cancelled)
    if levelset_iterations > 0:
        progress(0.5, "level set")
        init = sitk.Cast(sitk.SignedMaurerDistanceMap(mask, insideIsPositive=False, useImageSpacing=True),
                         sitk.sitkFloat32)
        ls = sitk.ThresholdSegmentationLevelSetImageFilter()
        ls.SetLowerThreshold(level)
        ls.SetUpperThreshold(float(arr.max()) + 1.0)
        ls.SetMaximumRMSError(0.002)
        ls.SetNumberOfIterations(int(levelset_iterations))
        ls.SetCurvatureScaling(1.0)
        ls.SetPropagationScaling(1.0)
        mask = sitk.ConnectedComponent(sitk.Cast(ls.Execute(init, smooth) < 0, sitk.sitkUInt8))
        labels = {int(mask[i]) for i in idx} - {0}
        if not labels:
            raise SegmentationError("the level set lost the seeds: lumen contrast too weak")
        mask = sitk.Cast(sitk.GetImageFromArray(np.isin(sitk.GetArrayViewFromImage(mask), sorted(labels))
                                                .astype(np.uint8)), sitk.sitkUInt8)
        mask.CopyInformation(sub)
    check_cancelled(cancelled)
    out = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    out.CopyInformation(image)
    out = sitk.Paste(out, sitk.Cast(mask, sitk.sitkUInt8), mask.GetSize(), [0, 0, 0], [int(v) for v in lo])
    log.info("lumen: intensity %.0f, background %.0f, edge level %.0f", fg, bg, level)
    progress(1.0, "lumen segmented")
    return out


def surface_from_mask(mask, *, smooth_iterations: int = 30) -> pv.PolyData:
    """Closed lumen surface of a SimpleITK mask (LPS mm, any direction matrix).

    Parameters
    ----------
    mask : SimpleITK.Image
        Binary lumen mask.
    smooth_iterations : int
        Windowed-sinc smoothing iterations against the voxel staircase.

    Returns
    -------
    pyvista.PolyData
    """
    import SimpleITK as sitk

    arr = np.pad(sitk.GetArrayFromImage(mask).astype(np.float32), 1)  # z, y, x; padded: closed surface
    if not arr.any():
        raise SegmentationError("empty lumen mask: no surface")
    grid = pv.ImageData(dimensions=arr.shape[::-1], origin=(-1.0, -1.0, -1.0))
    grid.point_data["m"] = arr.ravel()
    surf = grid.contour([0.5], scalars="m", method="flying_edges").triangulate().clean()
    sp = np.array(mask.GetSpacing())
    d = np.array(mask.GetDirection()).reshape(3, 3)
    surf.points = np.array(mask.GetOrigin()) + (np.asarray(surf.points) * sp) @ d.T
    if smooth_iterations > 0:
        surf = surf.smooth_taubin(n_iter=smooth_iterations, pass_band=0.05)
    return surf
