"""`twinplan history | replay | prov` on a real case, and replay catching a tampered item."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.cli import main
from app.project import load_case, save_case
from tests.app.twin_cases import cranium_twin

pytestmark = [pytest.mark.fem, pytest.mark.slow]


@pytest.fixture
def twinplan(capsys):
    """Run ``twinplan ARGS`` in this process (the console script's ``main``): (code, stdout, stderr)."""
    def run(*args, check=True):
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        if check:
            assert code == 0, err
        return code, out, err
    return run


def test_history_and_prov(tmp_path, twinplan):
    path = cranium_twin()
    text = twinplan("history", path)[1]
    assert "label/maxilla~1  [edit_split]" in text and "<- file:Cranium.inv3" in text
    data = json.loads(twinplan("history", path, "--json")[1])
    ids = [n["id"] for n in data["nodes"]]
    assert ids.index("label/bone") < ids.index("label/maxilla~1") < ids.index("label/maxilla")
    out = tmp_path / "thread.prov.json"
    summary = json.loads(twinplan("prov", path, "--out", out, "--json")[1])
    doc = json.loads(out.read_text())
    assert summary["entity"] == len(doc["entity"]) and summary["activity"] == 12
    code, _out, err = twinplan("history", tmp_path / "nope.twin", check=False)
    assert code == 2 and "nope.twin" in err


def test_replay_reports_exactly_the_tampered_item(tmp_path, twinplan):
    work = tmp_path / "case.twin"
    case = load_case(cranium_twin())
    # Keep the scan, the masks, the segmentations and the cut (with its in-place edit): the skin
    # mesh and the FE plan are replayed in test_replay.py; here they would only cost time.
    for kind, name in (("surface", "predicted_skin_maxilla"), ("surface", "skin"), ("label", "skin")):
        case.remove_item(kind, name)
    cranium = case.labels["cranium"]
    cranium.array[40, 128, 128] = 1 - cranium.array[40, 128, 128]  # one voxel flipped after the fact
    save_case(case, work)
    code, out, err = twinplan("replay", work, "--out", tmp_path / "new.twin", "--json", "--strict", check=False)
    assert code == 1, err  # --strict: something differs
    data = json.loads(out)
    assert data["differing"] == ["label/cranium"]
    assert len(data["items"]) == 8 and {"volume/ct", "label/maxilla"} <= {i["id"] for i in data["items"]}
    item = next(i for i in data["items"] if i["id"] == "label/cranium")
    assert item["identical"] is False and item["max_abs_diff"] == 1.0 and item["stored_matches_record"] is False
    assert all(i["identical"] for i in data["items"] if i["id"] != "label/cranium")
    new = load_case(tmp_path / "new.twin")
    assert np.array_equal(new.labels["cranium"].array != cranium.array,
                          np.eye(1, cranium.array.size, np.ravel_multi_index((40, 128, 128), cranium.array.shape),
                                 dtype=bool).reshape(cranium.array.shape))
    code, _out, err = twinplan("replay", work, "--out", work, check=False)
    assert code == 2 and "--out" in err
