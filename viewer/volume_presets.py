"""CT volume-rendering presets: colour and opacity transfer functions in HU.

Each preset is a list of control points ``(hu, r, g, b, opacity)``. The user
can shift the whole curve along the HU axis and scale its opacity, which
covers most of what one adjusts on a clinical workstation.
"""
from __future__ import annotations

import vtk

#: Control points (HU, r, g, b, opacity), ascending HU.
VOLUME_PRESETS: dict[str, list[tuple[float, float, float, float, float]]] = {
    "bone": [
        (-1024, 0.0, 0.0, 0.0, 0.0),
        (150, 0.55, 0.25, 0.15, 0.0),
        (250, 0.85, 0.65, 0.45, 0.25),
        (500, 0.95, 0.88, 0.75, 0.65),
        (1200, 1.0, 0.97, 0.90, 0.85),
        (3071, 1.0, 1.0, 1.0, 0.90),
    ],
    "skin": [
        (-1024, 0.0, 0.0, 0.0, 0.0),
        (-500, 0.75, 0.45, 0.35, 0.0),
        (-250, 0.93, 0.68, 0.55, 0.55),
        (100, 0.95, 0.72, 0.60, 0.70),
        (300, 0.98, 0.90, 0.80, 0.80),
        (3071, 1.0, 1.0, 1.0, 0.90),
    ],
    "vessels": [
        (-1024, 0.0, 0.0, 0.0, 0.0),
        (100, 0.45, 0.05, 0.05, 0.0),
        (180, 0.80, 0.10, 0.10, 0.35),
        (350, 0.95, 0.30, 0.25, 0.70),
        (600, 0.98, 0.85, 0.80, 0.80),
        (3071, 1.0, 1.0, 1.0, 0.85),
    ],
}


def transfer_functions(
    preset: str, shift_hu: float = 0.0, opacity_scale: float = 1.0
) -> tuple[vtk.vtkColorTransferFunction, vtk.vtkPiecewiseFunction]:
    """Colour and scalar-opacity functions of a preset.

    Parameters
    ----------
    preset : str
        A key of ``VOLUME_PRESETS``.
    shift_hu : float
        Added to every control point, HU (negative shows lower densities).
    opacity_scale : float
        Multiplies every opacity (clipped to 1).

    Returns
    -------
    (vtkColorTransferFunction, vtkPiecewiseFunction)

    Raises
    ------
    KeyError
        If the preset is unknown.
    """
    points = VOLUME_PRESETS[preset]
    color = vtk.vtkColorTransferFunction()
    opacity = vtk.vtkPiecewiseFunction()
    for hu, r, g, b, a in points:
        color.AddRGBPoint(hu + shift_hu, r, g, b)
        opacity.AddPoint(hu + shift_hu, min(1.0, max(0.0, a * opacity_scale)))
    return color, opacity
