"""Digital thread of a real case (Cranium demo CT): graph, history text, W3C PROV-JSON."""
from __future__ import annotations

import json

import pytest

from app.case import Case, Provenance
from app.project import load_case
from app.thread import (build_thread, export_prov_json, format_history, history_json, topological_order,
                        validate_prov_json)
from tests.app.twin_cases import cranium_twin

pytestmark = [pytest.mark.fem, pytest.mark.slow]


@pytest.fixture(scope="module")
def case() -> Case:
    return load_case(cranium_twin())


def test_graph_links_every_item_to_its_inputs(case):
    thread = build_thread(case)
    items = [n for n, node in thread.nodes.items() if node.kind == "item"]
    assert len(items) == len(case.volumes) + len(case.labels) + len(case.surfaces) == 11
    # The in-place islands edit keeps the version it replaced, cut from the bone.
    assert thread.nodes["label/maxilla~1"].operation == "edit_split"
    assert thread.inputs_of("label/maxilla") == ["label/maxilla~1"]
    assert thread.inputs_of("label/maxilla~1") == ["label/bone"]
    assert thread.inputs_of("label/bone") == ["volume/ct"]
    assert thread.inputs_of("volume/ct") == ["file:Cranium.inv3"]
    assert set(thread.inputs_of("surface/predicted_skin_maxilla")) == {"label/skin", "label/maxilla", "label/cranium"}
    order = topological_order(thread)
    for a, b in thread.edges:
        assert order.index(a) < order.index(b)
    assert thread.dependents_of("label/maxilla") == ["surface/predicted_skin_maxilla"]
    assert not any(node.stale for node in thread.nodes.values())
    prov = case.provenance["label/bone"]
    assert prov.user and prov.versions["numpy"] and prov.time.startswith("20")


def test_history_text_and_json(case):
    thread = build_thread(case)
    lines = format_history(thread)
    heads = [ln.split()[0] for ln in lines if not ln.startswith(" ")]
    assert heads.index("file:Cranium.inv3") < heads.index("volume/ct") < heads.index("label/bone")
    head = [ln for ln in lines if ln.startswith("label/maxilla  ")]
    assert head and "[edit_islands]" in head[0]
    data = history_json(thread)
    assert [n["id"] for n in data["nodes"]] == topological_order(thread)
    json.dumps(data)


def test_stale_input_is_flagged(case):
    thread = build_thread(case)
    mutated = Case(case.name)
    mutated.volumes, mutated.labels, mutated.surfaces = case.volumes, dict(case.labels), case.surfaces
    mutated.provenance = dict(case.provenance)
    skin = case.labels["skin"]
    from imaging.volume import LabelMap
    bigger = LabelMap(skin.array.copy(), skin.geometry, skin.labels)
    bigger.array[0, 0, 0] = 1 - bigger.array[0, 0, 0]
    mutated.set_item("label", "skin", bigger, Provenance("edit_paint", {"label": "skin"}, []))
    stale = build_thread(mutated).nodes["surface/predicted_skin_maxilla"].stale
    assert stale == ["label/skin"] and thread.nodes["surface/predicted_skin_maxilla"].stale == []


def test_prov_json_is_valid_w3c(case, tmp_path):
    doc = export_prov_json(case)
    assert validate_prov_json(doc) == []
    n_steps = sum(1 for n in build_thread(case).nodes.values() if n.provenance is not None)
    assert len(doc["activity"]) == n_steps == len(doc["wasGeneratedBy"]) == 12
    assert len(doc["wasAssociatedWith"]) == 2 * n_steps
    assert {"twin:user/" + case.provenance["label/bone"].user} <= set(doc["agent"])
    # The reference implementation of the W3C PROV data model reads it back.
    prov_model = pytest.importorskip("prov.model")
    path = tmp_path / "thread.json"
    path.write_text(json.dumps(doc))
    parsed = prov_model.ProvDocument.deserialize(str(path), format="json")
    assert len(list(parsed.get_records(prov_model.ProvEntity))) == len(doc["entity"])
    assert len(list(parsed.get_records(prov_model.ProvDerivation))) == len(doc["wasDerivedFrom"])
    # A broken document is caught: a relation pointing at an undeclared entity.
    bad = json.loads(json.dumps(doc))
    next(iter(bad["used"].values()))["prov:entity"] = "twin:nowhere"
    assert any("nowhere" in p for p in validate_prov_json(bad))
