"""`twinplan scenario` and `twinplan sweep`: what-if scenarios and their uncertainty (no Qt).

    twinplan scenario CASE.twin list|add|branch|rename|delete|run|compare ... [--json]
    twinplan sweep CASE.twin --scenario NAME --samples N --seed S [--workers N] [--scheduler tcp://...] [--json]
"""
from __future__ import annotations

import json

from app.cli import TerminalProgress, emit
from imaging.errors import InputError


def _value(text: str):
    """A --set value: JSON when it parses (numbers, lists, true/false), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _params(args) -> dict:
    params: dict = {}
    if getattr(args, "params", None):
        try:
            params.update(json.loads(args.params))
        except ValueError as exc:
            raise InputError(f"--params: not a JSON object ({exc})") from exc
        if not isinstance(params, dict):
            raise InputError("--params: not a JSON object")
    for item in getattr(args, "set", None) or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set {item!r}: expected KEY=VALUE")
        params[key.strip()] = _value(text)
    for key in ("segment", "move", "fixed", "centerline"):
        if getattr(args, key, None) is not None:
            params[key] = getattr(args, key)
    return params


def _row(s) -> dict:
    return {"name": s.name, "kind": s.kind, "parent": s.parent, "params": s.params, "summary": s.summary,
            "solver": s.results.get("solver", {}), "swept": "sweep" in s.results}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def cmd_scenario(args) -> int:
    from app import scenarios as sc
    from app.project import load_case, save_case

    case = load_case(args.case)
    action = args.action
    changed = True
    if action == "list":
        changed = False
        rows = [_row(s) for s in case.scenarios.values()]
        lines = [f"{r['name']:<24} {r['kind']:<7} from {r['parent']:<16} "
                 + (", ".join(f"{k} {_fmt(v)}" for k, v in list(r["summary"].items())[:3]) or "not run")
                 for r in rows] or ["no scenarios"]
        data = {"scenarios": rows}
    elif action == "add":
        s = sc.add_scenario(case, args.name, args.kind, _params(args), parent=args.parent)
        data, lines = _row(s), [f"added {s.kind} scenario {s.name}"]
    elif action == "branch":
        s = sc.branch_scenario(case, args.source, args.name, _params(args))
        data, lines = _row(s), [f"branched {s.name} from {args.source}"]
    elif action == "rename":
        sc.rename_scenario(case, args.old, args.new)
        data, lines = {"renamed": args.old, "to": args.new}, [f"renamed {args.old} to {args.new}"]
    elif action == "delete":
        deleted = sc.delete_scenario(case, args.name)
        data = {"deleted": args.name, "reparented": deleted.children}
        lines = [f"deleted {args.name}"]
    elif action == "run":
        names = list(case.scenarios) if args.all else args.names
        if not names:
            raise InputError("scenario run: name scenarios or give --all")
        data, lines = {"scenarios": {}}, []
        for name in names:
            bar = TerminalProgress()
            s = sc.run_scenario(case, name, progress=bar)
            bar.done()
            data["scenarios"][name] = {"summary": s.summary, "solver": s.results.get("solver", {})}
            lines.append(f"{name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in s.summary.items()))
    elif action == "compare":
        changed = False
        data = sc.compare_scenarios(case, args.names)
        lines = _compare_lines(data)
    else:  # argparse restricts the choices
        raise InputError(f"scenario: unknown action {action}")
    if changed:
        save_case(case, args.case)
    emit(data, args.json, lines)
    return 0


def _compare_lines(table: dict) -> list[str]:
    names = table["scenarios"]
    width = max([len(k) for k in table["outcomes"]] + [10])
    lines = [" " * width + "  " + "  ".join(f"{n[:14]:>14}" for n in names)]
    for key, row in table["outcomes"].items():
        lines.append(f"{key:<{width}}  " + "  ".join(f"{_fmt(row.get(n)):>14}" for n in names))
    for key, row in table["bands"].items():
        cells = [("-" if n not in row else f"{row[n][0]:.3g}..{row[n][2]:.3g}") for n in names]
        lines.append(f"{key + ' 5-95%':<{width}}  " + "  ".join(f"{c:>14}" for c in cells))
    for n in names:
        s = table["solver"][n]
        lines.append(f"solver {n}: " + (", ".join(f"{k} {_fmt(v)}" for k, v in s.items()) or "not run"))
    return lines


def cmd_sweep(args) -> int:
    from app.project import load_case, save_case
    from app.sweep import store_sweep, sweep_scenario

    case = load_case(args.case)
    ranges = None
    if args.range:
        ranges = {}
        for item in args.range:
            key, sep, text = item.partition("=")
            try:
                lo, hi = (float(v) for v in text.split(","))
            except ValueError as exc:
                raise InputError(f"--range {item!r}: expected NAME=LOW,HIGH") from exc
            ranges[key] = (lo, hi)
    bar = TerminalProgress()
    sweep = sweep_scenario(case, args.scenario, samples=args.samples, seed=args.seed, ranges=ranges,
                           workers=args.workers, scheduler=args.scheduler, progress=bar)
    bar.done()
    store_sweep(case, args.scenario, sweep)
    save_case(case, args.case)
    ex = sweep["executor"]
    lines = [f"sweep of {args.scenario}: {sweep['n_samples']} samples, seed {sweep['seed']}, "
             f"{ex['mode']} ({ex['workers']} workers), {sweep['seconds']:.1f} s",
             f"{'outcome':<44} {'p5':>10} {'p50':>10} {'p95':>10}"]
    for key, b in sweep["bands"].items():
        lines.append(f"{key:<44} {b['p5']:>10.4g} {b['p50']:>10.4g} {b['p95']:>10.4g}")
    for key, p in sweep["probability_ffr_below_0_80"].items():
        lines.append(f"P({key} < 0.80) = {p:.2f}")
    emit(sweep, args.json, lines)
    return 0


def register(sub) -> None:
    s = sub.add_parser("scenario", help="what-if scenarios of a case: list, add, branch, rename, delete, run, compare")
    s.add_argument("case")
    acts = s.add_subparsers(dest="action", required=True)

    def action(name: str, help_text: str):
        a = acts.add_parser(name, help=help_text)
        a.add_argument("--json", action="store_true")
        return a

    def param_options(a) -> None:
        a.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="a parameter (JSON value, e.g. move=[0,-5,0,0,0,0] or poisson_ratio=0.47)")
        a.add_argument("--params", help="parameters as one JSON object")
        a.add_argument("--segment", help="tissue: moved bone label")
        a.add_argument("--move", help='tissue: "tx,ty,tz,rx,ry,rz" (mm, deg, LPS, about the segment centre)')
        a.add_argument("--fixed", help="tissue: comma-separated fixed bone labels")
        a.add_argument("--centerline", help="ffr: case surface holding the centerline tree (Radius array)")

    action("list", "list the scenarios")
    a = action("add", "add a scenario over the baseline")
    a.add_argument("name")
    a.add_argument("--kind", default="tissue", help="tissue (default) or ffr")
    a.add_argument("--parent", default="baseline", help="scenario it derives from (default baseline)")
    param_options(a)
    a = action("branch", "copy a scenario under a new name, then change parameters")
    a.add_argument("source")
    a.add_argument("name")
    param_options(a)
    a = action("rename", "rename a scenario")
    a.add_argument("old")
    a.add_argument("new")
    a = action("delete", "delete a scenario (its branches move to its parent)")
    a.add_argument("name")
    a = action("run", "compute scenarios and store their results")
    a.add_argument("names", nargs="*")
    a.add_argument("--all", action="store_true", help="run every scenario")
    a = action("compare", "key outcomes of scenarios side by side")
    a.add_argument("names", nargs="+")
    s.set_defaults(func=cmd_scenario)

    w = sub.add_parser("sweep", help="uncertainty sweep of a scenario (Latin hypercube, Dask)")
    w.add_argument("case")
    w.add_argument("--scenario", required=True)
    w.add_argument("--samples", type=int, default=32, help="Latin hypercube samples (default 32)")
    w.add_argument("--seed", type=int, default=0, help="sampling seed (recorded; default 0)")
    w.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes; 0 runs serially here")
    w.add_argument("--scheduler", help="tcp://HOST:PORT of a running Dask scheduler instead of a LocalCluster")
    w.add_argument("--range", action="append", metavar="NAME=LOW,HIGH",
                   help="uncertain parameter range (default: the kind's; e.g. poisson_ratio=0.4,0.49)")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_sweep)
