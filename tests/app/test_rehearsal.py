"""Rehearsal of real Cranium soft-tissue scenarios: steps, the interpolated bone move, video read back."""
from __future__ import annotations

from concurrent.futures import CancelledError

import imageio.v3 as iio
import numpy as np
import pytest

from app.project import load_case
from app.rehearsal import build_rehearsal, list_scenarios
from app.rehearsal_video import export_video, render_frames
from imaging.errors import InputError
from mechanics.whatif import RigidMove
from tests.app.twin_case import cranium_twin

pytest.importorskip("dolfinx", reason="Debian python3-dolfinx-real is installed by make setup")
pytestmark = [pytest.mark.fem, pytest.mark.slow]
SIZE = (320, 240)


@pytest.fixture(scope="session")
def twin(tmp_path_factory, demo_case_path):
    return cranium_twin(tmp_path_factory.mktemp("twin"))


@pytest.fixture(scope="module")
def case(twin):
    return load_case(twin)


@pytest.fixture(scope="module")
def tilt(case):
    return build_rehearsal(case, "advance3_tilt", frames_per_step=2, move_frames=4)


def _layer(layers, name):
    return next(layer for layer in layers if layer.name == name)


def test_steps_and_the_interpolated_move(case, tilt):
    assert set(list_scenarios(case)) == {"advance5", "advance3_tilt", "stenosis60"}
    assert [s.title for s in tilt.steps] == ["Baseline", "Cut", "Move", "Soft tissue"]
    assert tilt.n_frames == 2 + 2 + 4 + 2 and len(tilt.frame_plan()) == 10
    start = _layer(tilt.scene(0, 0.0), "segment").mesh.points
    center = np.asarray(case.scenarios["advance3_tilt"].results["segment_center_mm"])
    move = RigidMove((0.0, -3.0, 0.0), (5.0, 0.0, 0.0))
    end = _layer(tilt.scene(2, 1.0), "segment").mesh.points
    np.testing.assert_allclose(end, start + move.displacement(start, center), atol=1e-6)
    half = _layer(tilt.scene(2, 0.5), "segment").mesh.points
    halfway = RigidMove((0.0, -1.5, 0.0), (2.5, 0.0, 0.0))
    np.testing.assert_allclose(half, start + halfway.displacement(start, center), atol=1e-6)
    # The segment stays where the move put it in the result step; the skin carries the prediction.
    np.testing.assert_allclose(_layer(tilt.scene(3, 0.0), "segment").mesh.points, end, atol=1e-6)
    skin = _layer(tilt.scene(3, 0.0), "skin")
    assert skin.scalars == "displacement_norm_mm"
    top = case.scenarios["advance3_tilt"].summary["max_skin_displacement_mm"]
    assert skin.clim[1] == pytest.approx(top, rel=1e-6)
    assert _layer(tilt.scene(1, 0.0), "segment").color != _layer(tilt.scene(0, 0.0), "segment").color  # highlighted


def test_pure_translation_moves_every_point_by_5_mm(case):
    reh = build_rehearsal(case, "advance5", frames_per_step=1, move_frames=2)
    a = _layer(reh.scene(0, 0.0), "segment").mesh.points
    b = _layer(reh.scene(2, 1.0), "segment").mesh.points
    np.testing.assert_allclose(b - a, np.tile([0.0, -5.0, 0.0], (len(a), 1)), atol=1e-9)


@pytest.mark.parametrize("suffix", ["gif", "mp4"])
def test_video_read_back(tilt, tmp_path, suffix):
    out = tmp_path / f"tilt.{suffix}"
    seen = []
    rep = export_video(tilt, out, fps=5, size=SIZE, progress=lambda f, m: seen.append(f))
    assert rep["frames"] == 10 and rep["duration_s"] == pytest.approx(2.0) and seen[-1] == 1.0
    frames = iio.imread(out)
    assert frames.shape[:3] == (10, SIZE[1], SIZE[0])
    f = frames.astype(float)
    assert f[0].std() > 10  # a rendered head, not a blank frame
    diff = [np.abs(f[i + 1] - f[i]).mean() for i in range(9)]
    assert min(diff) > 0.05  # every frame differs (timeline strip at least)
    # Steps look different: cut (segment highlighted) vs baseline, result (colour map) vs cut.
    assert np.abs(f[2] - f[0]).mean() > 1.0 and np.abs(f[8] - f[3]).mean() > 2.0
    # The move: frames 4..7 differ beyond the timeline strip (the segment travels).
    body = slice(0, SIZE[1] - 8)
    assert np.abs(f[7][body] - f[4][body]).mean() > 0.05


def test_cancel_and_bad_input(case, tilt, tmp_path):
    with pytest.raises(CancelledError):
        list(render_frames(tilt, size=SIZE, cancelled=lambda: True))
    with pytest.raises(InputError, match="no such scenario"):
        build_rehearsal(case, "nope")
    with pytest.raises(InputError, match=".mp4 or .gif"):
        export_video(tilt, tmp_path / "x.avi")
    with pytest.raises(InputError, match="--fps"):
        export_video(tilt, tmp_path / "x.gif", fps=0)
    with pytest.raises(InputError, match="does not exist"):
        export_video(tilt, tmp_path / "no" / "x.gif")
    assert not list(tmp_path.iterdir())
