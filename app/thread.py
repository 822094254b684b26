"""The digital thread of a case: its provenance graph, history text and W3C PROV-JSON (no Qt).

Nodes are the case's items (``volume/ct``, ``label/bone``...) with their
:class:`~app.case.Provenance`, the raw sources they were read from
(``file:...``) and the landmarks people placed. An edge runs from each input
to the item computed from it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from app.case import Case, Provenance

#: Operations that read a raw source (a file) rather than other items.
SOURCE_OPERATIONS = ("import_dicom", "import_volume_file", "import_invesalius", "import_invesalius_mask",
                     "import_invesalius_surface", "followup_register", "fuse_surface")
PROV_NAMESPACE = "urn:twinplan:"


@dataclass
class ThreadNode:
    """One node of the thread: a case item, a raw source or a placed landmark.

    Attributes
    ----------
    id : str
        ``kind/name`` for items and landmarks, ``file:NAME`` for sources.
    kind : str
        ``"item"``, ``"version"`` (superseded by an in-place edit),
        ``"source"``, ``"landmark"`` or ``"missing"`` (an input recorded in a
        provenance but no longer in the case).
    provenance : Provenance or None
        None for sources, landmarks and items stored without provenance.
    hash : str
        Content hash (items: the current content; sources: the recorded one).
    """

    id: str
    kind: str
    provenance: Optional[Provenance] = None
    hash: str = ""
    inputs: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    @property
    def operation(self) -> str:
        if self.provenance is not None:
            return self.provenance.operation
        return {"source": "raw input", "landmark": "placed by hand", "missing": "missing"}.get(
            self.kind, "unrecorded")


@dataclass
class Thread:
    """The provenance graph: nodes by id and edges (input id, output id)."""

    nodes: dict[str, ThreadNode]
    edges: list[tuple[str, str]]

    def inputs_of(self, node_id: str) -> list[str]:
        return list(self.nodes[node_id].inputs)

    def dependents_of(self, node_id: str) -> list[str]:
        """Every node computed (directly or not) from ``node_id``, in replay order."""
        out: set[str] = set()
        frontier = [node_id]
        while frontier:
            cur = frontier.pop()
            for a, b in self.edges:
                if a == cur and b not in out:
                    out.add(b)
                    frontier.append(b)
        return [n for n in topological_order(self) if n in out]

    def roots(self) -> list[str]:
        return [n for n, node in self.nodes.items() if not node.inputs]


def _item_ids(case: Case) -> list[str]:
    return ([f"volume/{n}" for n in case.volumes] + [f"label/{n}" for n in case.labels]
            + [f"surface/{n}" for n in case.surfaces])


def provenance_chain(prov: Provenance) -> list[Provenance]:
    """The versions of an item edited in place, oldest first (the last one is ``prov``)."""
    chain = [prov]
    while chain[0].previous:
        chain.insert(0, Provenance.from_json(dict(chain[0].previous)))
    return chain


def version_id(item: str, k: int) -> str:
    """Node id of the ``k``-th (1 = oldest) superseded version of an item edited in place."""
    return f"{item}~{k}"


def build_thread(case: Case) -> Thread:
    """Provenance graph of ``case``.

    An item edited in place (its step read the item itself) has one node per
    superseded version (``label/x~1``, ``label/x~2``...) before the current
    ``label/x``. An input is linked to the version whose recorded hash it
    matches; an input whose hash matches no version is listed in ``stale``.

    Parameters
    ----------
    case : Case
        Any case; items without provenance become ``unrecorded`` roots.

    Returns
    -------
    Thread
    """
    nodes: dict[str, ThreadNode] = {}
    edges: list[tuple[str, str]] = []
    versions: dict[str, list[tuple[str, str]]] = {}  # item id -> [(node id, output hash)] oldest first
    for iid in _item_ids(case):
        kind, name = iid.split("/", 1)
        prov = case.provenance.get(iid)
        chain = provenance_chain(prov) if prov is not None else []
        for k, old in enumerate(chain[:-1], start=1):
            nodes[version_id(iid, k)] = ThreadNode(version_id(iid, k), "version", old, old.output_hash)
        nodes[iid] = ThreadNode(iid, "item", prov, case.content_hash(kind, name))
        versions[iid] = [(version_id(iid, k), p.output_hash) for k, p in enumerate(chain[:-1], start=1)]
        versions[iid].append((iid, nodes[iid].hash))
    for name in case.landmarks:
        nodes[f"landmark/{name}"] = ThreadNode(f"landmark/{name}", "landmark")
    for nid in list(nodes):
        node = nodes[nid]
        if node.provenance is None:
            continue
        own = nid.split("~", 1)[0]
        for ref in node.provenance.inputs:
            src, digest = ref.get("id", ""), ref.get("hash", "")
            if src == own:  # in-place edit: the version just before this one
                chain = [v for v, _h in versions[own]]
                target = chain[chain.index(nid) - 1] if chain.index(nid) > 0 else src
            elif src in versions:
                match = [v for v, h in versions[src] if h == digest]
                target = match[-1] if match else src
            else:
                target = src
            if target not in nodes:
                kind = "source" if src.startswith("file:") else "missing"
                nodes[target] = ThreadNode(target, kind, None, digest)
            if digest and nodes[target].hash and digest != nodes[target].hash:
                node.stale.append(target)
            if target not in node.inputs and target != nid:
                node.inputs.append(target)
                edges.append((target, nid))
    return Thread(nodes, edges)


def topological_order(thread: Thread) -> list[str]:
    """Node ids with every input before the items computed from it (Kahn; ties keep case order).

    Raises
    ------
    ValueError
        If the provenance has a cycle (a corrupt manifest).
    """
    pending = {n: len(node.inputs) for n, node in thread.nodes.items()}
    order: list[str] = []
    ready = [n for n, k in pending.items() if k == 0]
    while ready:
        cur = ready.pop(0)
        order.append(cur)
        for a, b in thread.edges:
            if a == cur:
                pending[b] -= 1
                if pending[b] == 0:
                    ready.append(b)
    if len(order) != len(thread.nodes):
        stuck = sorted(set(thread.nodes) - set(order))
        raise ValueError(f"provenance cycle through {', '.join(stuck)}")
    return order


def _short(params: dict[str, Any], width: int = 90) -> str:
    text = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in params.items() if k != "seconds")
    return text if len(text) <= width else text[: width - 3] + "..."


def format_history(thread: Thread) -> list[str]:
    """Lines of ``twinplan history``: each node in replay order with its operation and inputs."""
    lines = []
    for nid in topological_order(thread):
        node = thread.nodes[nid]
        head = f"{nid}  [{node.operation}]"
        if node.hash:
            head += f"  sha256 {node.hash[:12]}"
        lines.append(head)
        if node.provenance is not None:
            p = node.provenance
            lines.append(f"    at {p.time} by {p.user}, twinplan {p.versions.get('twinplan', '?')}")
            if p.params:
                lines.append(f"    params: {_short(p.params)}")
        for ref in node.inputs:
            lines.append(f"    <- {ref}" + ("  (stale: changed since this was computed)" if ref in node.stale else ""))
    return lines


def history_json(thread: Thread) -> dict:
    """``twinplan history --json``: nodes (replay order) and edges."""
    nodes = []
    for nid in topological_order(thread):
        node = thread.nodes[nid]
        entry = {"id": nid, "kind": node.kind, "operation": node.operation, "hash": node.hash,
                 "inputs": node.inputs, "stale_inputs": node.stale}
        if node.provenance is not None:
            entry["provenance"] = node.provenance.to_json()
        nodes.append(entry)
    return {"nodes": nodes, "edges": [list(e) for e in thread.edges]}


# -- W3C PROV-JSON -------------------------------------------------------------
def _q(node_id: str) -> str:
    """Qualified name in the ``twin`` namespace (PROV-N local names allow ``/`` and ``:``)."""
    return "twin:" + node_id.replace(" ", "_")


def export_prov_json(case: Case, thread: Optional[Thread] = None) -> dict:
    """The thread as a W3C PROV-JSON document (https://www.w3.org/submissions/prov-json/).

    Items, sources and landmarks are entities; each recorded step is an
    activity that ``used`` its inputs, generated its item and was associated
    with two agents: the OS user (a person) and TwinPlan (software, with its
    version). ``wasDerivedFrom`` links each item to each input.

    Returns
    -------
    dict
        JSON-serialisable PROV-JSON.
    """
    thread = thread or build_thread(case)
    doc: dict[str, Any] = {"prefix": {"twin": PROV_NAMESPACE}, "entity": {}, "activity": {}, "agent": {},
                           "used": {}, "wasGeneratedBy": {}, "wasAssociatedWith": {}, "wasDerivedFrom": {}}
    counter = {"n": 0}

    def rel(kind: str, body: dict) -> None:
        counter["n"] += 1
        doc[kind][f"_:{kind[:3]}{counter['n']}"] = body

    for nid in topological_order(thread):
        node = thread.nodes[nid]
        entity = {"prov:type": f"twin:{node.kind}", "prov:label": nid}
        if node.hash:
            entity["twin:sha256"] = node.hash
        doc["entity"][_q(nid)] = entity
        p = node.provenance
        if p is None:
            continue
        act = _q("run/" + nid)
        doc["activity"][act] = {
            "prov:startTime": p.time, "prov:endTime": p.time, "prov:type": "twin:" + p.operation,
            "twin:operation": p.operation, "twin:params": json.dumps(p.params, sort_keys=True, default=str),
            "twin:versions": json.dumps(p.versions, sort_keys=True)}
        person = _q("user/" + (p.user or "unknown"))
        software = _q("software/twinplan-" + p.versions.get("twinplan", "unknown"))
        doc["agent"].setdefault(person, {"prov:type": {"$": "prov:Person", "type": "prov:QUALIFIED_NAME"}})
        doc["agent"].setdefault(software, {"prov:type": {"$": "prov:SoftwareAgent", "type": "prov:QUALIFIED_NAME"},
                                           "twin:versions": json.dumps(p.versions, sort_keys=True)})
        rel("wasGeneratedBy", {"prov:entity": _q(nid), "prov:activity": act, "prov:time": p.time})
        rel("wasAssociatedWith", {"prov:activity": act, "prov:agent": person})
        rel("wasAssociatedWith", {"prov:activity": act, "prov:agent": software})
        for src in node.inputs:
            rel("used", {"prov:activity": act, "prov:entity": _q(src)})
            rel("wasDerivedFrom", {"prov:generatedEntity": _q(nid), "prov:usedEntity": _q(src),
                                   "prov:activity": act})
    return doc


_RELATIONS = {
    "used": ("prov:activity", "prov:entity"),
    "wasGeneratedBy": ("prov:entity", "prov:activity"),
    "wasAssociatedWith": ("prov:activity", "prov:agent"),
    "wasDerivedFrom": ("prov:generatedEntity", "prov:usedEntity"),
}
_TARGET = {"prov:activity": "activity", "prov:entity": "entity", "prov:agent": "agent",
           "prov:generatedEntity": "entity", "prov:usedEntity": "entity"}


def validate_prov_json(doc: dict) -> list[str]:
    """Structural problems of a PROV-JSON document (empty list when valid).

    Checks: only PROV-JSON top-level keys, declared prefixes for every
    qualified name, relations whose required ends exist and are of the right
    type, and every non-source entity generated by exactly one activity.
    """
    problems: list[str] = []
    allowed = {"prefix", "entity", "activity", "agent", *_RELATIONS, "wasAttributedTo", "wasInformedBy",
               "bundle", "actedOnBehalfOf"}
    for key in doc:
        if key not in allowed:
            problems.append(f"unknown top-level key {key!r}")
    prefixes = set(doc.get("prefix", {})) | {"prov", "xsd"}

    def check_name(name: str) -> None:
        if ":" not in name or name.split(":", 1)[0] not in prefixes | {"_"}:
            problems.append(f"{name!r}: undeclared prefix")

    for kind in ("entity", "activity", "agent"):
        for name in doc.get(kind, {}):
            check_name(name)
    generated: dict[str, int] = {}
    for kind, ends in _RELATIONS.items():
        for rid, body in doc.get(kind, {}).items():
            for end in ends:
                target = body.get(end)
                if target is None:
                    problems.append(f"{kind} {rid}: missing {end}")
                elif target not in doc.get(_TARGET[end], {}):
                    problems.append(f"{kind} {rid}: {end} {target!r} is not a declared {_TARGET[end]}")
            act = body.get("prov:activity")
            if act is not None and act not in doc.get("activity", {}):
                problems.append(f"{kind} {rid}: activity {act!r} not declared")
            if kind == "wasGeneratedBy" and body.get("prov:entity"):
                generated[body["prov:entity"]] = generated.get(body["prov:entity"], 0) + 1
    for name, entity in doc.get("entity", {}).items():
        if name in generated and generated[name] != 1:
            problems.append(f"entity {name!r} generated {generated[name]} times")
    return problems


def describe_inputs(thread: Thread, node_id: str) -> Iterable[str]:
    """Human lines about the inputs of a node (id, operation, short hash)."""
    for src in thread.inputs_of(node_id):
        node = thread.nodes[src]
        yield f"{src} [{node.operation}] {node.hash[:12]}"
