"""New data updates the twin: a follow-up / post-op scan compared with the plan's prediction (no Qt).

The follow-up scan is registered (rigid, mutual information) to the baseline
scan and resampled onto its grid, segmented with the baseline's recipe (the
recorded params of every threshold label of the baseline scan) and meshed
like the baseline skin. The chosen prediction (a ``tissue_*`` surface) is
carried onto the fine baseline skin surface and compared with the follow-up
skin: a signed distance map and landmark errors. Every added item has a
provenance that ``app.replay`` can recompute.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyvista as pv
from scipy.spatial import cKDTree

from app.case import Case, Provenance
from imaging.errors import InputError
from imaging.progress import CancelledFn, ProgressFn, no_progress
from imaging.transform import Transform
from imaging.volume import Volume

log = logging.getLogger(__name__)

#: Prediction displacements are carried to the fine skin by inverse-distance weighting of this many nodes.
TRANSFER_NEIGHBOURS = 8
#: A skin point "moved" by the plan when its predicted displacement exceeds this (mm).
MOVED_MM = 0.5


@dataclass
class FollowupRequest:
    """What to import and compare.

    Attributes
    ----------
    scan : str or Path
        DICOM folder, NIfTI/NRRD file or ``.inv3`` of the follow-up scan.
    prediction : str, optional
        Name of the predicted skin surface (default: the case's only ``tissue_*`` surface).
    name : str
        Prefix of the items added (``followup_ct``, ``followup_skin``...).
    sampling_fraction : float
        Registration metric sampling (0..1].
    landmarks_file : str, optional
        Landmarks located on the follow-up scan (its own frame): full 3D errors.
    """

    scan: str | Path
    prediction: Optional[str] = None
    name: str = "followup"
    sampling_fraction: float = 0.05
    landmarks_file: Optional[str] = None


def _check(cancelled: Optional[CancelledFn]) -> None:
    if cancelled is not None and cancelled():
        raise CancelledError()


def choose_prediction(case: Case, name: Optional[str]) -> str:
    """The predicted skin surface to compare (``name``, or the only ``tissue_*`` surface)."""
    preds = [n for n in case.surfaces
             if case.provenance.get(f"surface/{n}") is not None
             and case.provenance[f"surface/{n}"].operation.startswith("tissue_")]
    if name is not None:
        if name not in preds:
            raise InputError(f"--prediction {name}: no predicted skin of that name (predictions: "
                             f"{', '.join(preds) or 'none; run twinplan tissue first'})")
        return name
    if len(preds) != 1:
        raise InputError("--prediction: choose one of " + (", ".join(preds) if preds else
                                                           "none (run twinplan tissue first)"))
    return preds[0]


def _load_followup(path: str | Path) -> tuple[Volume, Provenance]:
    from app.pipeline import import_scan

    src = Path(path)
    if not src.exists():
        raise InputError(f"{src}: follow-up scan not found")
    imported = import_scan(src)
    _name, vol = imported.primary_volume()
    return vol, imported.provenance["volume/ct"]


def register_followup(baseline: Volume, path: str | Path, params: dict,
                      progress: ProgressFn = no_progress, cancelled: Optional[CancelledFn] = None):
    """(follow-up resampled on the baseline grid, registration result, import provenance)."""
    from imaging.registration import register_images, resample_volume

    moving, imported = _load_followup(path)
    result = register_images(baseline, moving, kind="rigid", sampling_fraction=params["sampling_fraction"],
                             shrink_factors=params["shrink_factors"],
                             smoothing_sigmas_mm=params["smoothing_sigmas_mm"],
                             max_iterations=params["max_iterations"], seed=params["seed"],
                             progress=progress, cancelled=cancelled)
    resampled = resample_volume(moving, baseline, result.transform)
    resampled.description = "follow-up on the baseline grid"
    return resampled, result, imported


def transfer_displacement(skin: pv.PolyData, prediction: pv.PolyData) -> pv.PolyData:
    """The fine skin surface moved by the prediction's displacement (inverse-distance weighted).

    Parameters
    ----------
    skin : pv.PolyData
        Baseline skin surface (mm).
    prediction : pv.PolyData
        Predicted skin with ``original_points_mm`` and ``displacement_mm`` point arrays.
    """
    if "original_points_mm" not in prediction.point_data or "displacement_mm" not in prediction.point_data:
        raise InputError("prediction surface lacks original_points_mm/displacement_mm (not a tissue prediction)")
    dist, idx = cKDTree(prediction["original_points_mm"]).query(skin.points, k=TRANSFER_NEIGHBOURS)
    w = 1.0 / np.maximum(dist, 1e-6) ** 2
    u = np.einsum("nk,nkj->nj", w, prediction["displacement_mm"][idx]) / w.sum(axis=1, keepdims=True)
    out = pv.PolyData(np.asarray(skin.points) + u, skin.faces)
    out["displacement_mm"] = u
    out["displacement_norm_mm"] = np.linalg.norm(u, axis=1)
    out["original_points_mm"] = np.asarray(skin.points, float)
    return out


def distance_map(predicted: pv.PolyData, actual: pv.PolyData, baseline: pv.PolyData) -> pv.PolyData:
    """Predicted skin with ``distance_mm`` (to the follow-up skin) and ``no_change_distance_mm``.

    ``no_change_distance_mm`` is the same measure for the unmoved baseline
    skin: what the prediction has to beat.
    """
    from imaging.fusion import surface_distances

    out = predicted.copy()
    out["distance_mm"] = surface_distances(np.asarray(predicted.points), actual, margin_mm=20.0)
    out["no_change_distance_mm"] = surface_distances(np.asarray(baseline.points), actual, margin_mm=20.0)
    return out


def distance_stats(d: np.ndarray) -> dict:
    """Robust summary (mm) of signed distances; non-finite ones (out of the search margin) counted apart."""
    ok = np.isfinite(d)
    a = np.abs(d[ok])
    if not a.size:
        return {"n_points": 0, "n_far": int((~ok).sum())}
    return {"n_points": int(a.size), "n_far": int((~ok).sum()), "mean_abs_mm": float(a.mean()),
            "median_abs_mm": float(np.median(a)), "p95_abs_mm": float(np.percentile(a, 95)),
            "max_abs_mm": float(a.max()), "rms_mm": float(np.sqrt(np.mean(a ** 2))),
            "mean_signed_mm": float(d[ok].mean())}


def _recipe(case: Case, volume_id: str) -> list[tuple[str, Provenance]]:
    """The threshold labels of the baseline scan: (name, provenance)."""
    out = []
    for iid, prov in case.provenance.items():
        if (iid.startswith("label/") and prov.operation == "segment_threshold"
                and prov.inputs and prov.inputs[0]["id"] == volume_id):
            out.append((iid.split("/", 1)[1], prov))
    return out


def run_followup(
    case: Case,
    request: FollowupRequest,
    *,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> dict:
    """:func:`compute_followup` and store its items in ``case``; returns the report."""
    from app.pipeline import apply_result

    results, report = compute_followup(case, request, progress=progress, cancelled=cancelled)
    for result in results:
        apply_result(case, result)
    return report


def compute_followup(
    case: Case,
    request: FollowupRequest,
    *,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> tuple[list, dict]:
    """Register, segment and compare a follow-up scan without changing ``case`` (safe on a worker).

    The results (``StepResult`` list, in order) are ``volume/<name>_ct``,
    ``label/<name>_<recipe label>``, ``surface/<name>_skin``,
    ``surface/<name>_predicted_skin`` and ``surface/<name>_distance`` (point
    arrays ``distance_mm``, ``no_change_distance_mm``).

    Returns
    -------
    (list of StepResult, dict)
        The report: ``registration`` (matrix follow-up -> baseline, metric...),
        ``distance`` and ``no_change`` statistics (all points) and the same in
        ``moved_region`` (points the plan moves by > 0.5 mm), ``landmarks``
        (name -> predicted, actual, error_mm, method), ``items``, ``seconds``.

    Raises
    ------
    InputError
        Missing scan, no prediction, no baseline skin surface or recipe.
    """
    from imaging.segment import segment_threshold
    from imaging.meshing import mesh_labelmap

    from app.pipeline import StepResult

    progress = progress or no_progress
    t0 = time.perf_counter()
    base_case, case = case, Case(case.name)  # a scratch view: the items are shared, the dicts are not
    case.volumes, case.labels, case.surfaces = dict(base_case.volumes), dict(base_case.labels), dict(base_case.surfaces)
    case.provenance, case.landmarks = dict(base_case.provenance), dict(base_case.landmarks)
    pred_name = choose_prediction(case, request.prediction)
    pred_prov = case.provenance[f"surface/{pred_name}"]
    skin_label = pred_prov.params.get("skin", "skin")
    skin_prov = case.provenance.get(f"surface/{skin_label}")
    if skin_prov is None or skin_prov.operation != "mesh_labelmap":
        raise InputError(f"surface {skin_label!r}: the baseline skin must be meshed first "
                         f"(twinplan mesh --label {skin_label}) to compare with the follow-up")
    base_name, base = case.primary_volume()
    base_id = f"volume/{base_name}"
    recipe = _recipe(case, base_id)
    if skin_label not in [n for n, _p in recipe]:
        raise InputError(f"label {skin_label!r}: not a threshold label of {base_id}; no recipe to repeat")
    prefix = request.name
    # -- register + resample ------------------------------------------------------
    params = {"path": str(request.scan), "kind": "rigid", "sampling_fraction": request.sampling_fraction,
              "shrink_factors": [4, 2, 1], "smoothing_sigmas_mm": [2.0, 1.0, 0.0], "max_iterations": 200,
              "seed": 20240601}
    resampled, reg, imported = register_followup(base, request.scan, params,
                                                 lambda f, m: progress(0.5 * f, m), cancelled)
    _check(cancelled)
    params = dict(params, matrix=reg.transform.matrix.tolist(), metric=reg.metric,
                  import_operation=imported.operation)
    vol_name = f"{prefix}_ct"
    case.set_item("volume", vol_name, resampled,
                  Provenance("followup_register", params, [dict(imported.inputs[0]), case.input_ref("volume", base_name)]))
    # -- same recipe -------------------------------------------------------------
    items = [f"volume/{vol_name}"]
    for n, (label, prov) in enumerate(recipe):
        p = dict(prov.params, label=f"{prefix}_{label}")
        progress(0.5 + 0.2 * n / max(1, len(recipe)), f"Segmenting {p['label']}")
        lab = segment_threshold(resampled, tuple(p["hu_range"]), name=p["label"],
                                keep_largest=p.get("keep_largest", True), fill_holes=p.get("fill_holes", True))
        case.set_item("label", p["label"], lab,
                      Provenance("segment_threshold", p, [case.input_ref("volume", vol_name)]))
        items.append(f"label/{p['label']}")
        _check(cancelled)
    progress(0.7, "Meshing the follow-up skin")
    mp = dict(skin_prov.params, label=f"{prefix}_{skin_label}")
    actual = mesh_labelmap(case.labels[mp["label"]], 1, smoothing_iterations=mp["smoothing_iterations"],
                           passband=mp["passband"], decimate=mp["decimate"])
    case.set_item("surface", f"{prefix}_skin", actual,
                  Provenance("mesh_labelmap", mp, [case.input_ref("label", mp["label"])]))
    _check(cancelled)
    # -- compare -----------------------------------------------------------------
    progress(0.85, "Comparing prediction and follow-up")
    predicted = transfer_displacement(case.surfaces[skin_label], case.surfaces[pred_name])
    case.set_item("surface", f"{prefix}_predicted_skin", predicted, Provenance(
        "transfer_displacement", {"neighbours": TRANSFER_NEIGHBOURS},
        [case.input_ref("surface", skin_label), case.input_ref("surface", pred_name)]))
    dmap = distance_map(predicted, actual, case.surfaces[skin_label])
    case.set_item("surface", f"{prefix}_distance", dmap, Provenance(
        "followup_distance", {"margin_mm": 20.0},
        [case.input_ref("surface", f"{prefix}_predicted_skin"), case.input_ref("surface", f"{prefix}_skin"),
         case.input_ref("surface", skin_label)]))
    items += [f"surface/{prefix}_skin", f"surface/{prefix}_predicted_skin", f"surface/{prefix}_distance"]
    moved = predicted["displacement_norm_mm"] > MOVED_MM
    report = {
        "prediction": pred_name, "registration": reg.to_json(), "items": items,
        "distance": distance_stats(dmap["distance_mm"]),
        "no_change": distance_stats(dmap["no_change_distance_mm"]),
        "moved_region": {"n_points": int(moved.sum()),
                         "distance": distance_stats(dmap["distance_mm"][moved]),
                         "no_change": distance_stats(dmap["no_change_distance_mm"][moved])},
        "landmarks": landmark_errors(case, predicted, actual, reg.transform, request.landmarks_file),
    }
    report["seconds"] = round(time.perf_counter() - t0, 3)
    results = []
    for iid in items:
        kind, name = iid.split("/", 1)
        store = {"volume": case.volumes, "label": case.labels, "surface": case.surfaces}[kind]
        results.append(StepResult(kind, name, store[name], case.provenance[iid]))
    progress(1.0, "Follow-up compared")
    log.info("follow-up: median |d| %.2f mm (no change %.2f mm), %.1f s", report["distance"].get("median_abs_mm",
             float("nan")), report["no_change"].get("median_abs_mm", float("nan")), report["seconds"])
    return results, report


def landmark_errors(case: Case, predicted: pv.PolyData, actual: pv.PolyData, followup_to_baseline: Transform,
                    landmarks_file: Optional[str] = None) -> dict:
    """Predicted vs actual position (baseline frame, mm) of the case's landmarks.

    A landmark's predicted position is its baseline position moved by the
    predicted skin displacement of the nearest skin point. The actual one is
    the same landmark located on the follow-up (``landmarks_file``, follow-up
    frame, mapped through the registration: ``method`` "located"), else the
    closest follow-up skin point to the prediction (``method`` "surface": the
    error is then the distance along the surface normal only).
    """
    from imaging.fusion import surface_distances
    from imaging.landmarks import read_csv, read_slicer_markups

    located = {}
    if landmarks_file:
        marks = read_csv(landmarks_file) if str(landmarks_file).lower().endswith(".csv") \
            else read_slicer_markups(landmarks_file)
        located = {m.name: followup_to_baseline.apply(np.asarray(m.position_lps, float)) for m in marks}
    tree = cKDTree(predicted["original_points_mm"])
    out = {}
    for name, mark in case.landmarks.items():
        p = np.asarray(mark.position_lps, float)
        dist, i = tree.query(p)
        if dist > 10.0:  # not a skin landmark: the prediction says nothing about it
            continue
        guess = p + predicted["displacement_mm"][i]
        if name in located:
            actual_p, method = np.asarray(located[name]).reshape(3), "located"
        else:
            d = surface_distances(guess[None, :], actual, margin_mm=20.0)[0]
            actual_p, method = None, "surface"
        err = float(np.linalg.norm(guess - actual_p)) if actual_p is not None else float(abs(d))
        out[name] = {"predicted_mm": guess.tolist(), "actual_mm": None if actual_p is None else actual_p.tolist(),
                     "error_mm": err, "method": method}
    return out


# -- replay of the follow-up items (called by app.replay) ----------------------------
def recompute(kind: str, ctx, prov: Provenance, name: str):
    """Recompute a follow-up item from its recorded inputs (``app.replay`` registry)."""
    if kind == "register":
        resampled, _reg, imported = register_followup(ctx.input_item(prov, 1), prov.params["path"], prov.params)
        if imported.inputs[0]["hash"] != prov.inputs[0]["hash"]:
            raise InputError(f"{prov.params['path']}: follow-up scan content differs from the hash recorded "
                             f"in the case")
        return resampled
    if kind == "transfer":
        return transfer_displacement(ctx.input_item(prov, 0), ctx.input_item(prov, 1))
    if kind == "distance":
        return distance_map(ctx.input_item(prov, 0), ctx.input_item(prov, 1), ctx.input_item(prov, 2))
    raise InputError(f"{prov.operation}: unknown follow-up step")
