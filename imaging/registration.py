"""Image -> image registration (rigid or affine) with SimpleITK: CT <-> CBCT, pre/post-op.

Mattes mutual information (works across modalities and grey-value scales,
e.g. CBCT values that are not HU), regular-step gradient descent with
physical-shift scaling, three resolution levels. The result is a
``Transform`` from the moving image's patient frame to the fixed image's
(both LPS mm): ``fixed_point = T(moving_point)``.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from imaging.errors import InputError, SolverError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress
from imaging.transform import Transform
from imaging.volume import Volume

log = logging.getLogger(__name__)

KINDS = ("rigid", "affine")
#: Most metric samples per resolution level.
MAX_SAMPLES = 100_000


@dataclass
class ImageRegistrationResult:
    """Outcome of :func:`register_images`.

    Attributes
    ----------
    transform : Transform
        Moving patient frame -> fixed patient frame (mm).
    metric : float
        Final Mattes mutual information (negative; lower is better).
    iterations : int
        Optimizer iterations over all levels and stages.
    """

    transform: Transform
    metric: float
    iterations: int
    iterations_per_level: list[int]
    stop_condition: str
    seconds: float
    kind: str
    metric_history: list[float] = field(default_factory=list)

    def to_json(self) -> dict:
        """Summary for reports and the CLI."""
        return {
            "matrix": self.transform.matrix.tolist(), "from_frame": self.transform.from_frame,
            "to_frame": self.transform.to_frame, "kind": self.kind, "metric": round(self.metric, 6),
            "metric_name": "mattes_mutual_information", "iterations": self.iterations,
            "iterations_per_level": self.iterations_per_level, "stop_condition": self.stop_condition,
            "rotation_deg": round(self.transform.rotation_deg, 4),
            "translation_mm": [round(float(t), 4) for t in self.transform.translation_mm],
            "seconds": round(self.seconds, 3),
        }


def sitk_to_transform(tx: sitk.Transform, from_frame: str, to_frame: str) -> Transform:
    """4x4 matrix of an affine SimpleITK transform (any affine kind or composite of them)."""
    origin = np.array(tx.TransformPoint((0.0, 0.0, 0.0)))
    m = np.eye(4)
    for i in range(3):
        e = np.zeros(3)
        e[i] = 1.0
        m[:3, i] = np.array(tx.TransformPoint(tuple(e))) - origin
    m[:3, 3] = origin
    return Transform(m, from_frame, to_frame)


def transform_to_sitk(transform: Transform) -> sitk.AffineTransform:
    """SimpleITK affine transform with the same matrix (maps ``from_frame`` to ``to_frame``)."""
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(tuple(transform.linear.ravel()))
    tx.SetTranslation(tuple(transform.translation_mm))
    return tx


def resample_volume(moving: Volume, reference: Volume, transform: Transform, *,
                    default_value: Optional[float] = None, linear: bool = True) -> Volume:
    """Resample ``moving`` onto ``reference``'s grid through a moving -> reference transform.

    Parameters
    ----------
    transform : Transform
        Maps the moving patient frame to the reference one (as returned by
        :func:`register_images`).
    default_value : float, optional
        Value outside the moving image; default its minimum (air for CT).
    linear : bool
        Linear interpolation (images) or nearest neighbour (label maps).
    """
    fill = float(moving.array.min()) if default_value is None else float(default_value)
    # SimpleITK resamples by pulling: it needs reference point -> moving point.
    source = moving.to_sitk()
    image = sitk.Resample(source, reference.to_sitk(), transform_to_sitk(transform.inverse()),
                          sitk.sitkLinear if linear else sitk.sitkNearestNeighbor, fill, source.GetPixelID())
    return Volume.from_sitk(image, modality=moving.modality, description=moving.description, kind=moving.kind)


def _float_image(volume: Volume) -> sitk.Image:
    return sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)


def register_images(
    fixed: Volume,
    moving: Volume,
    *,
    kind: str = "rigid",
    initial: Optional[Transform] = None,
    shrink_factors: Sequence[int] = (4, 2, 1),
    smoothing_sigmas_mm: Sequence[float] = (2.0, 1.0, 0.0),
    sampling_fraction: float = 0.05,
    histogram_bins: int = 50,
    max_iterations: int = 200,
    seed: int = 20240601,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> ImageRegistrationResult:
    """Register ``moving`` onto ``fixed`` by Mattes mutual information, multi-resolution.

    Parameters
    ----------
    fixed, moving : Volume
        Any modality; grey values need not match (MI). Geometry in LPS mm.
    kind : str
        ``"rigid"`` (6 parameters) or ``"affine"`` (12; run after a rigid stage).
    initial : Transform, optional
        Start (moving -> fixed). Default: align the centres of intensity mass.
    shrink_factors, smoothing_sigmas_mm : sequences
        One entry per resolution level, coarse to fine (sigmas in mm).
    sampling_fraction : float
        Fraction of fixed voxels sampled per metric evaluation (0..1], at most
        ``MAX_SAMPLES`` per level, drawn with ``seed`` so that the result is
        repeatable.
    histogram_bins : int
        Joint histogram bins of the MI metric.
    max_iterations : int
        Optimizer iterations per level.

    Returns
    -------
    ImageRegistrationResult

    Raises
    ------
    InputError
        Unknown kind, mismatched level lists, bad sampling fraction.
    SolverError
        If SimpleITK fails (e.g. images do not overlap).
    """
    progress = progress or no_progress
    if kind not in KINDS:
        raise InputError(f"--kind {kind}: use {' or '.join(KINDS)}")
    if len(shrink_factors) != len(smoothing_sigmas_mm) or not shrink_factors:
        raise InputError("shrink_factors and smoothing_sigmas_mm need one entry per level")
    if not 0 < sampling_fraction <= 1:
        raise InputError(f"sampling_fraction={sampling_fraction}: must be in (0, 1]")
    t0 = time.perf_counter()
    # SimpleITK samples its "fixed" image; samples outside the other image are
    # lost, so the smaller field of view (a CBCT against a CT) is sampled.
    swap = _extent_mm3(moving) < _extent_mm3(fixed)
    fixed_img, moving_img = _float_image(moving if swap else fixed), _float_image(fixed if swap else moving)
    if initial is not None:
        start = sitk.AffineTransform(transform_to_sitk(initial if swap else initial.inverse()))
        if kind == "rigid":
            start = _rigid_from_affine(start)
    else:
        start = sitk.CenteredTransformInitializer(fixed_img, moving_img, sitk.Euler3DTransform(),
                                                  sitk.CenteredTransformInitializerFilter.MOMENTS)
    stages = ["rigid"] if kind == "rigid" else ["rigid", "affine"]
    if kind == "affine" and initial is not None and not initial.is_rigid:
        stages = ["affine"]
    per_level: list[int] = []
    history: list[float] = []
    tx, metric, stop = start, float("nan"), ""
    for n, stage in enumerate(stages):
        if stage == "affine" and not isinstance(tx, sitk.AffineTransform):
            tx = _affine_from(tx)
        span = (n / len(stages), (n + 1) / len(stages))
        tx, metric, stop, levels = _run_stage(
            fixed_img, moving_img, tx, shrink_factors, smoothing_sigmas_mm, sampling_fraction, histogram_bins,
            max_iterations, seed, history, lambda f, m, s=span: progress(s[0] + f * (s[1] - s[0]), m), cancelled,
            # An affine stage after the rigid one starts close: smaller first steps.
            step_mm=0.5 if stage == "affine" and n > 0 else 2.0)
        per_level.extend(levels)
    # The optimised SimpleITK transform maps its fixed image's points to its moving image's.
    matrix = sitk_to_transform(tx, "a", "b").matrix
    transform = Transform(matrix if swap else np.linalg.inv(matrix), moving.series_uid or "moving",
                          fixed.series_uid or "fixed")
    seconds = time.perf_counter() - t0
    progress(1.0, f"Registered: MI {metric:.4f}, {sum(per_level)} iterations")
    log.info("image registration %s: MI %.4f, %d iterations, %.1f s (%s)", kind, metric, sum(per_level),
             seconds, stop)
    return ImageRegistrationResult(transform, metric, int(sum(per_level)), per_level, stop, seconds, kind, history)


def _extent_mm3(volume: Volume) -> float:
    return float(np.prod(np.array(volume.dims_xyz) * np.array(volume.geometry.spacing_xyz)))


def _rigid_from_affine(tx: sitk.AffineTransform) -> sitk.Euler3DTransform:
    m = np.array(tx.GetMatrix()).reshape(3, 3)
    u, _s, vt = np.linalg.svd(m)
    rigid = sitk.Euler3DTransform()
    rigid.SetCenter(tx.GetCenter())
    rigid.SetMatrix(tuple((u @ vt).ravel()))
    rigid.SetTranslation(tx.GetTranslation())
    return rigid


def _affine_from(tx: sitk.Transform) -> sitk.AffineTransform:
    affine = sitk.AffineTransform(3)
    affine.SetCenter(tx.GetCenter())
    affine.SetMatrix(tx.GetMatrix())
    affine.SetTranslation(tx.GetTranslation())
    return affine


def _pyramid_level(image: sitk.Image, shrink: int, sigma_mm: float) -> sitk.Image:
    """Block-average by ``shrink`` then Gaussian-smooth (mm): far cheaper than smoothing the full image."""
    out = sitk.BinShrink(image, [int(shrink)] * 3) if shrink > 1 else image
    return sitk.SmoothingRecursiveGaussian(out, float(sigma_mm)) if sigma_mm > 0 else out


def _run_stage(fixed_img, moving_img, tx, shrink, sigmas, fraction, bins, max_iterations, seed, history,
               progress: ProgressFn, cancelled: Optional[CancelledFn], step_mm: float = 2.0):
    """Optimise ``tx`` in place level by level; returns (tx, metric, stop, iterations per level).

    Each level is its own run on images we shrink ourselves: SimpleITK's built-in
    pyramid smooths the full-resolution images first (seconds on a head CT).
    """
    levels: list[int] = []
    n_levels = len(shrink)
    metric, stop = float("nan"), ""
    for level, (factor, sigma) in enumerate(zip(shrink, sigmas)):
        check_cancelled(cancelled)
        fixed_l = _pyramid_level(fixed_img, factor, sigma)
        moving_l = _pyramid_level(moving_img, factor, sigma)
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(bins))
        method.SetMetricSamplingStrategy(method.RANDOM)
        # Capped sample count: at full resolution 5 % of a head CT is 350k samples,
        # ~0.8 s per iteration for no gain in a 6- or 12-parameter fit.
        n_voxels = float(np.prod(fixed_l.GetSize()))
        method.SetMetricSamplingPercentage(min(float(fraction), MAX_SAMPLES / n_voxels), int(seed))
        # Gradients by finite differences at the samples: the default gradient
        # images of the whole volume cost seconds of setup per level and save nothing.
        method.SetMetricUseFixedImageGradientFilter(False)
        method.SetMetricUseMovingImageGradientFilter(False)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsRegularStepGradientDescent(
            learningRate=step_mm * factor / shrink[0], minStep=0.005 * factor, numberOfIterations=int(max_iterations),
            relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetInitialTransform(tx, inPlace=True)
        state = {"cancel": False, "iterations": 0}

        def on_iteration(method=method, state=state, level=level) -> None:
            it = method.GetOptimizerIteration()
            state["iterations"] = it + 1
            history.append(method.GetMetricValue())
            progress(min((level + min(it / max_iterations, 1.0)) / n_levels, 0.999),
                     f"Level {level + 1}/{n_levels}, iteration {it}, MI {method.GetMetricValue():.4f}")
            if cancelled is not None and cancelled():
                state["cancel"] = True
                method.StopRegistration()

        method.AddCommand(sitk.sitkIterationEvent, on_iteration)
        try:
            method.Execute(fixed_l, moving_l)
        except RuntimeError as exc:
            raise SolverError(f"image registration failed: {str(exc).strip().splitlines()[-1]}") from exc
        if state["cancel"]:
            raise CancelledError("cancelled by user")
        levels.append(state["iterations"])
        metric, stop = float(method.GetMetricValue()), method.GetOptimizerStopConditionDescription()
    return tx, metric, stop, levels
