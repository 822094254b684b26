"""Window/level display mapping of CT values (shared by the CLI pictures and the viewer)."""
from __future__ import annotations

import numpy as np

#: (window, level) presets in HU.
WINDOW_PRESETS = {"bone": (2000.0, 400.0), "soft_tissue": (400.0, 40.0),
                  "brain": (80.0, 40.0), "lung": (1500.0, -600.0)}


def window_to_gray(array: np.ndarray, window: float, level: float) -> np.ndarray:
    """Map HU to 0..255 with a window/level."""
    lo = level - window / 2.0
    g = (array.astype(np.float32) - lo) / max(window, 1e-6)
    return (np.clip(g, 0.0, 1.0) * 255).astype(np.uint8)
