"""Print the pinned runtime requirements of the Debian package's venv.

Walks the runtime dependencies in ``pyproject.toml`` through the metadata of
the development venv (run it with ``.venv/bin/python``), so the package gets
exactly the versions the test suite ran with. Packages Debian provides as
``python3-*`` (seen from the system site) are left to Debian; dev tools are
never reached because extras other than the ones requested are skipped.

Usage: ``.venv/bin/python packaging/requirements.py > requirements.txt``
"""
from __future__ import annotations

import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

#: Distributions we do not ship, with the reason.
EXCLUDE = {
    # The ``pyside6`` meta package pulls WebEngine, PDF and the add-on modules
    # (~400 MB); TwinPlan uses QtCore/QtGui/QtWidgets/QtSvg/QtOpenGL only.
    "pyside6": "pyside6-essentials",
    "pyside6-addons": None,
    "pyside6-webengine": None,
    "pyside6-pdf": None,
}
SYSTEM_PREFIX = "/usr/lib/python3/dist-packages"


def runtime_closure(pyproject: Path) -> dict[str, md.Distribution]:
    """Installed distributions needed at run time, by canonical name."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    todo = [Requirement(d) for d in deps]
    seen: dict[str, md.Distribution] = {}
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in EXCLUDE:
            if EXCLUDE[name] is None:
                continue
            req, name = Requirement(EXCLUDE[name]), EXCLUDE[name]
        if name in seen:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            sys.exit(f"requirements: {req.name} is not installed in the development venv (make setup)")
        seen[name] = dist
        for spec in dist.requires or []:
            sub = Requirement(spec)
            extras = [""] + sorted(req.extras)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return seen


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    for name, dist in sorted(runtime_closure(root / "pyproject.toml").items()):
        location = str(dist.locate_file(""))
        if location.startswith(SYSTEM_PREFIX):
            print(f"# {name}=={dist.version} from Debian ({location})")
            continue
        print(f"{dist.metadata['Name']}=={dist.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
