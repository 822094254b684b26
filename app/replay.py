"""Replay a case: recompute every item from the raw inputs and compare with what is stored (no Qt).

``OPERATIONS`` maps each provenance ``operation`` the pipeline and CLI write
to a function that recomputes the item from its inputs and recorded params.
Raw inputs (the imported scan) are re-read from their recorded path and
checked against the recorded content hash. Deterministic steps must give a
bit-identical item; solver steps carry a stated tolerance on the largest
absolute difference (mm for surfaces, the voxel unit for images).
"""
from __future__ import annotations

import argparse
import copy
import logging
import time
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from app.case import Case, Provenance, hash_surface
from app.pipeline import StepResult
from app.thread import SOURCE_OPERATIONS, Thread, build_thread, topological_order, version_id
from imaging.errors import InputError
from imaging.progress import CancelledFn, ProgressFn, no_progress

log = logging.getLogger(__name__)

Recompute = Callable[["ReplayContext", Provenance, str], Any]


@dataclass
class ReplayOp:
    """How to recompute one operation.

    Attributes
    ----------
    recompute : callable
        ``recompute(ctx, provenance, item_name) -> item``.
    tolerance : float
        Largest absolute difference accepted (0: must be bit-identical).
    reason : str
        Why the tolerance is what it is (shown in reports).
    """

    recompute: Recompute
    tolerance: float = 0.0
    reason: str = "deterministic: bit-identical"


@dataclass
class ReplayContext:
    """The case being rebuilt plus a cache of raw sources read once per replay."""

    case: Case
    sources: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, Any] = field(default_factory=dict)  # node id -> recomputed item

    def input_item(self, prov: Provenance, index: int = 0):
        ref = prov.inputs[index]["id"]
        kind, name = ref.split("/", 1)
        store = {"volume": self.case.volumes, "label": self.case.labels, "surface": self.case.surfaces}[kind]
        if name not in store:
            raise InputError(f"{ref}: input of {prov.operation} was not rebuilt")
        return store[name]


# -- raw sources -----------------------------------------------------------------
def _imported(ctx: ReplayContext, prov: Provenance) -> Case:
    """The case built by re-importing the recorded source, checked against its recorded hash."""
    from pathlib import Path

    from app.pipeline import import_scan

    path = prov.params.get("path")
    if not path:
        raise InputError(f"{prov.operation}: no source path recorded; cannot replay")
    key = f"{path}|{prov.params.get('series_uid')}|{prov.params.get('downsample', 1)}"
    if key not in ctx.sources:
        if not Path(path).exists():
            raise InputError(f"{path}: raw input of the case is missing (recorded by {prov.operation}); "
                             f"restore it to replay")
        factor = int(prov.params.get("downsample", 1))
        if factor > 1:  # imported through the memory guard, downsampled
            from app.memory_guard import import_dicom_downsampled

            ctx.sources[key] = import_dicom_downsampled(path, factor, series_uid=prov.params.get("series_uid"))
        else:
            ctx.sources[key] = import_scan(path, series_uid=prov.params.get("series_uid"))
    imported = ctx.sources[key]
    recorded = {r["id"]: r["hash"] for r in prov.inputs if r["id"].startswith("file:")}
    now = {r["id"]: r["hash"] for p in imported.provenance.values() for r in p.inputs}
    for rid, digest in recorded.items():
        if now.get(rid) != digest:
            raise InputError(f"{path}: raw input content differs from the hash recorded in the case "
                             f"({rid}: recorded {digest[:12]}, now {str(now.get(rid))[:12]})")
    return imported


def _import_volume(ctx, prov, name):
    return _imported(ctx, prov).volumes["ct"]


def _import_mask(ctx, prov, name):
    return _imported(ctx, prov).labels[f"inv_mask_{prov.params['index']}"]


def _import_surface(ctx, prov, name):
    return _imported(ctx, prov).surfaces[f"inv_surface_{prov.params['index']}"]


# -- derived items -----------------------------------------------------------------
def _segment(ctx, prov, name):
    from imaging.segment import segment_threshold

    p = prov.params
    return segment_threshold(ctx.input_item(prov), tuple(p["hu_range"]), name=p.get("label", name),
                             keep_largest=p.get("keep_largest", True), fill_holes=p.get("fill_holes", True))


def _mesh(ctx, prov, name):
    from imaging.meshing import mesh_labelmap

    p = prov.params
    return mesh_labelmap(ctx.input_item(prov), 1, smoothing_iterations=p["smoothing_iterations"],
                         passband=p["passband"], decimate=p["decimate"])


#: Recorded edit params -> argparse names of ``twinplan edit`` (the single implementation of each tool).
_EDIT_ARGS = {"seed_lps": "seed", "hu_range": "hu", "centers_lps": "center", "plane_point_lps": "plane_point",
              "plane_normal_lps": "plane_normal", "with": "with_"}


def _edit(ctx, prov, name):
    from app import cli_edit
    from imaging.volume import LabelInfo

    op = prov.operation[len("edit_"):]
    p = prov.params
    if op == "split":
        from imaging.segment_tools import split_by_plane

        parts = split_by_plane(ctx.input_item(prov), p["plane_point_lps"], p["plane_normal_lps"],
                               kerf_mm=p["kerf_mm"], names=p["out_labels"])
        return parts[p["side"]]
    parser = argparse.ArgumentParser()
    cli_edit.register(parser.add_subparsers())
    ns = parser.parse_args(["edit", "case", "--label", p["label"], "--op", op])
    for key, value in p.items():
        setattr(ns, _EDIT_ARGS.get(key, key), value)
    if op == "fill":
        ns.fill_view = p.get("view")
    if op == "scissors":
        ns.polygon = list(np.asarray(p["polygon_lps"], float).ravel())
        ns.outside, ns.fill, ns.view = p["mode"] == "outside", not p["erase"], p["view"]
    handlers = {"grow": cli_edit._op_grow, "islands": cli_edit._op_islands, "morph": cli_edit._op_morph,
                "fill": cli_edit._op_fill, "combine": cli_edit._op_combine, "scissors": cli_edit._op_scissors,
                "paint": lambda c, a: cli_edit._op_paint(c, a, False),
                "erase": lambda c, a: cli_edit._op_paint(c, a, True)}
    if op not in handlers:
        raise InputError(f"{prov.operation}: unknown edit tool")
    out = handlers[op](ctx.case, ns)[0]
    out.labels = {v: LabelInfo(p["out_label"], i.color) if v == 1 else i for v, i in out.labels.items()}
    return out


def _new_label(ctx, prov, name):
    from imaging.volume import LabelInfo, LabelMap, default_color

    volume = ctx.input_item(prov)
    return LabelMap(np.zeros(volume.array.shape, np.uint8), volume.geometry,
                    {1: LabelInfo(name, default_color(name, len(ctx.case.labels)))})


def _region_grow(ctx, prov, name):
    from imaging.segment_tools import region_grow

    p = prov.params
    return region_grow(ctx.input_item(prov), p["seed_lps"], hu_range=tuple(p["hu_range"]), name=name)


def _split_gui(ctx, prov, name):
    from imaging.segment_tools import split_by_plane
    from imaging.volume import LabelInfo

    p = prov.params
    parts = split_by_plane(ctx.input_item(prov), p["point_lps"], p["normal_lps"], kerf_mm=p["kerf_mm"])
    # The GUI split records no side: the part whose content the record names is this item.
    side = next((i for i, part in enumerate(parts) if part.content_hash() == prov.output_hash), 0)
    part = parts[side]
    part.labels = {v: LabelInfo(name, i.color) if v == 1 else i for v, i in part.labels.items()}
    return part


def _tissue(ctx, prov, name):
    from app.plan import TissuePlan, run_tissue_plan
    from mechanics.whatif import RigidMove

    p = prov.params
    move = RigidMove(tuple(p["move"]["translation_mm"]), tuple(p["move"]["rotation_deg"]))
    plan = TissuePlan(p["segment"], move, fixed=list(p["fixed"]), skin=p["skin"], model=p["model"],
                      voxel_mm=p["voxel_mm"], youngs_modulus_pa=p["youngs_modulus_pa"],
                      poisson_ratio=p["poisson_ratio"])
    return run_tissue_plan(ctx.case, plan).item


def _followup(kind: str) -> Recompute:
    def run(ctx, prov, name):
        from app import followup

        return followup.recompute(kind, ctx, prov, name)
    return run


#: Solver tolerance: the FE solves use CG with rtol 1e-9 (mechanics/tissue.py), so a
#: replay on another thread count may differ in the last digits of a few-mm
#: displacement; 1e-6 mm is far below any clinical meaning and far above round-off.
TISSUE_TOL_MM = 1e-6
#: Image registration samples the metric with a fixed seed, but ITK's multi-threaded
#: metric sums in thread order: resampled HU may shift by a fraction of a unit.
REGISTRATION_TOL_HU = 1.0

OPERATIONS: dict[str, ReplayOp] = {
    "import_invesalius": ReplayOp(_import_volume),
    "import_dicom": ReplayOp(_import_volume),
    "import_volume_file": ReplayOp(_import_volume),
    "import_invesalius_mask": ReplayOp(_import_mask),
    "import_invesalius_surface": ReplayOp(_import_surface),
    "segment_threshold": ReplayOp(_segment),
    "mesh_labelmap": ReplayOp(_mesh),
    **{f"edit_{op}": ReplayOp(_edit) for op in ("grow", "islands", "paint", "erase", "morph", "fill", "combine",
                                                "split", "scissors")},
    "new_label": ReplayOp(_new_label),
    "region_grow": ReplayOp(_region_grow),
    "split_by_plane": ReplayOp(_split_gui),
    "tissue_linear": ReplayOp(_tissue, TISSUE_TOL_MM, "FE solve, CG rtol 1e-9: within 1e-6 mm"),
    "tissue_neohookean": ReplayOp(_tissue, TISSUE_TOL_MM, "FE Newton solve, CG rtol 1e-9: within 1e-6 mm"),
    "followup_register": ReplayOp(_followup("register"), REGISTRATION_TOL_HU,
                                  "MI registration (seeded sampling, threaded metric): within 1 HU"),
    "transfer_displacement": ReplayOp(_followup("transfer"), TISSUE_TOL_MM, "follows the FE prediction"),
    "followup_distance": ReplayOp(_followup("distance"), 1e-3, "follows registration: within 1e-3 mm"),
}


# -- comparison ------------------------------------------------------------------
def compare_items(kind: str, a, b) -> tuple[bool, Optional[float]]:
    """(bit-identical, largest absolute difference) of two items; None when not comparable (shape).

    Surfaces compare points, faces and the point arrays both carry
    (displacements, distances).
    """
    if kind == "surface":
        if a.n_points != b.n_points or not np.array_equal(np.asarray(a.faces), np.asarray(b.faces)):
            return False, None
        same = hash_surface(a) == hash_surface(b)
        diff = float(np.abs(np.asarray(a.points, float) - np.asarray(b.points, float)).max()) if a.n_points else 0.0
        for key in sorted(set(a.point_data.keys()) & set(b.point_data.keys())):
            x, y = np.asarray(a.point_data[key]), np.asarray(b.point_data[key])
            if x.shape != y.shape:
                return False, None
            if x.size and np.issubdtype(x.dtype, np.number):
                same = same and np.array_equal(x, y)
                diff = max(diff, float(np.nanmax(np.abs(x.astype(float) - y.astype(float)))))
        return same, diff
    same = a.content_hash() == b.content_hash()
    if a.array.shape != b.array.shape or not a.geometry.same_grid(b.geometry):
        return False, None
    diff = float(np.abs(a.array.astype(np.float64) - b.array.astype(np.float64)).max()) if a.array.size else 0.0
    return same, diff


@dataclass
class ReplayItem:
    id: str
    operation: str
    identical: bool
    max_abs_diff: Optional[float]
    tolerance: float
    within_tolerance: bool
    seconds: float
    stored_hash: str
    replayed_hash: str
    stored_matches_record: bool

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ReplayReport:
    items: list[ReplayItem]
    not_replayed: list[str]
    seconds: float

    @property
    def differing(self) -> list[str]:
        return [i.id for i in self.items if not i.within_tolerance]

    def to_json(self) -> dict:
        return {"items": [i.to_json() for i in self.items], "differing": self.differing,
                "not_replayed": self.not_replayed, "identical": sum(i.identical for i in self.items),
                "seconds": round(self.seconds, 3)}


def replay_order(case: Case, thread: Optional[Thread] = None) -> list[str]:
    """Item and version node ids in replay order.

    Topological; items recorded without inputs (a label painted from nothing
    on the scan's grid) come right after the first imported volume.
    """
    thread = thread or build_thread(case)
    order = [n for n in topological_order(thread) if thread.nodes[n].kind in ("item", "version")]
    late = [n for n in order if not thread.nodes[n].inputs and thread.nodes[n].provenance is not None
            and thread.nodes[n].provenance.operation not in SOURCE_OPERATIONS]
    rest = [n for n in order if n not in late]
    first_import = next((i for i, n in enumerate(rest) if n.startswith("volume/")), -1)
    return rest[: first_import + 1] + late + rest[first_import + 1:]


def _store(case: Case, kind: str) -> dict:
    return {"volume": case.volumes, "label": case.labels, "surface": case.surfaces}[kind]


def _get(case: Case, iid: str):
    kind, name = iid.split("/", 1)
    return kind, name, _store(case, kind).get(name)


def _run_node(ctx: ReplayContext, thread: Thread, nid: str) -> tuple[Any, Provenance]:
    """Recompute one node with its inputs bound to the versions it was computed from."""
    node = thread.nodes[nid]
    prov = node.provenance
    for src in node.inputs:
        if src in ctx.nodes:
            kind, name = src.split("~", 1)[0].split("/", 1)
            _store(ctx.case, kind)[name] = ctx.nodes[src]
    iid = nid.split("~", 1)[0]
    kind, name = iid.split("/", 1)
    item = OPERATIONS[prov.operation].recompute(ctx, prov, name)
    inputs = [dict(r) if r["id"].startswith("file:") else ctx.case.input_ref(*r["id"].split("/", 1))
              for r in prov.inputs]
    new_prov = Provenance(prov.operation, copy.deepcopy(prov.params), inputs)
    ctx.case.set_item(kind, name, item, new_prov)
    ctx.nodes[nid] = item
    return item, new_prov


def replay_case(
    case: Case,
    *,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> tuple[Case, ReplayReport]:
    """Recompute every item of ``case`` from its raw inputs and compare.

    Parameters
    ----------
    case : Case
        The stored case (not modified).

    Returns
    -------
    (Case, ReplayReport)
        The rebuilt case (landmarks and unrecorded items copied) and the
        per-item comparison.

    Raises
    ------
    InputError
        A raw input is missing or its content differs from the recorded hash.
    concurrent.futures.CancelledError
        If ``cancelled()`` turns true between items.
    """
    progress = progress or no_progress
    t_all = time.perf_counter()
    out = Case(case.name)
    for mark in case.landmarks.values():
        out.landmarks[mark.name] = mark
    ctx = ReplayContext(out)
    thread = build_thread(case)
    order = replay_order(case, thread)
    items: list[ReplayItem] = []
    not_replayed: list[str] = []
    provs: dict[str, Provenance] = {}
    for n, nid in enumerate(order):
        if cancelled is not None and cancelled():
            raise CancelledError()
        prov = thread.nodes[nid].provenance
        progress(n / max(1, len(order)), f"Replaying {nid}")
        if prov is None or prov.operation not in OPERATIONS:
            if thread.nodes[nid].kind == "item":
                # Nothing recorded to recompute it from: carried over, and said so.
                kind, name, stored = _get(case, nid)
                out.set_item(kind, name, stored, copy.deepcopy(prov) if prov else None)
                ctx.nodes[nid] = stored
                not_replayed.append(nid)
            continue
        t0 = time.perf_counter()
        item, provs[nid] = _run_node(ctx, thread, nid)
        if thread.nodes[nid].kind != "item":
            continue
        kind, name, stored = _get(case, nid)
        same, diff = compare_items(kind, stored, item)
        tol = OPERATIONS[prov.operation].tolerance
        stored_hash = case.content_hash(kind, name)
        items.append(ReplayItem(nid, prov.operation, same, diff, tol, same or (diff is not None and diff <= tol),
                                round(time.perf_counter() - t0, 3), stored_hash, provs[nid].output_hash,
                                stored_hash == prov.output_hash))
        log.info("replayed %s (%s): identical %s, max diff %s", nid, prov.operation, same, diff)
    for nid in thread.nodes:  # inputs were bound to older versions on the way: put the current ones back
        if thread.nodes[nid].kind == "item" and nid in ctx.nodes:
            kind, name = nid.split("/", 1)
            _store(out, kind)[name] = ctx.nodes[nid]
            if nid in provs:
                out.provenance[nid] = provs[nid]
    progress(1.0, "Replay done")
    return out, ReplayReport(items, not_replayed, time.perf_counter() - t_all)


def redo_from(
    case: Case,
    item_id: str,
    *,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> list[StepResult]:
    """Recompute one item and everything derived from it, with the case's current inputs.

    The case is not modified (safe on a worker thread): the results come back
    in dependency order, ready for ``apply_result`` (one undo step in the GUI).

    Raises
    ------
    InputError
        The item (or a dependent) has no recorded operation TwinPlan can replay.
    """
    progress = progress or no_progress
    thread = build_thread(case)
    if item_id not in thread.nodes or thread.nodes[item_id].kind != "item":
        raise InputError(f"{item_id}: no such item in the case")
    first = version_id(item_id, 1) if version_id(item_id, 1) in thread.nodes else item_id
    targets = [first] + thread.dependents_of(first)
    scratch = Case(case.name)
    scratch.volumes, scratch.labels, scratch.surfaces = dict(case.volumes), dict(case.labels), dict(case.surfaces)
    scratch.landmarks = dict(case.landmarks)
    scratch.provenance = dict(case.provenance)
    ctx = ReplayContext(scratch)
    for nid, node in thread.nodes.items():  # inputs outside the redone part: as stored now
        if node.kind == "item":
            ctx.nodes[nid] = _get(case, nid)[2]
    for nid in targets:
        prov = thread.nodes[nid].provenance
        if prov is None or prov.operation not in OPERATIONS:
            raise InputError(f"{nid}: no replayable operation recorded "
                             f"({prov.operation if prov else 'no provenance'})")
    latest: dict[str, StepResult] = {}
    for n, nid in enumerate(targets):
        if cancelled is not None and cancelled():
            raise CancelledError()
        progress(n / len(targets), f"Recomputing {nid}")
        item, new_prov = _run_node(ctx, thread, nid)
        iid = nid.split("~", 1)[0]
        kind, name = iid.split("/", 1)
        latest[iid] = StepResult(kind, name, item, new_prov, {"redo_of": item_id})
    progress(1.0, "Recomputed")
    return list(latest.values())
