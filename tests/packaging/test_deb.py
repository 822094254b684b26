"""`make package` builds a .deb that installs with apt, runs from /opt, and removes cleanly.

Runs as root (CI does): it really installs the package on this machine, then
removes it. Timings are printed (``-s``) and the whole test stays under its
6-minute budget once build/wheelhouse holds the wheels (the first build on a
fresh clone downloads them).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from app import __version__
from tests.conftest import DEMO_CASE, ROOT

pytestmark = [pytest.mark.slow]
DEB = ROOT / "dist" / f"twinplan_{__version__}_amd64.deb"
INSTALLED = ["/usr/bin/twinplan", "/usr/bin/twinplan-gui", "/usr/share/applications/twinplan.desktop",
             "/usr/share/mime/packages/twinplan.xml", "/usr/share/icons/hicolor/scalable/apps/twinplan.svg",
             "/usr/share/icons/hicolor/256x256/apps/twinplan.png", "/opt/twinplan/venv/bin/python"]


def run(args, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"  # the installed copy, never the dev venv
    env["DEBIAN_FRONTEND"] = "noninteractive"
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, **kwargs)


def dpkg_installed() -> bool:
    out = run(["dpkg-query", "-W", "-f=${Status}", "twinplan"])
    return "ok installed" in out.stdout


@pytest.fixture(scope="module")
def root_with_dpkg():
    if os.geteuid() != 0 or shutil.which("dpkg-deb") is None or shutil.which("apt-get") is None:
        pytest.skip("installs a Debian package: needs root and dpkg/apt (CI runs as root)")
    if dpkg_installed():
        assert run(["apt-get", "purge", "-y", "-q", "twinplan"]).returncode == 0


def test_package_builds_installs_runs_and_removes(root_with_dpkg, tmp_path):
    times = {}
    t0 = time.monotonic()
    build = run(["make", "-s", "package"], cwd=ROOT, timeout=900)
    times["build_s"] = time.monotonic() - t0
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-3000:]
    assert DEB.is_file()
    times["deb_mb"] = DEB.stat().st_size / 2**20

    info = run(["dpkg-deb", "--field", str(DEB), "Package", "Version", "Architecture", "Depends", "Installed-Size"])
    assert f"Version: {__version__}" in info.stdout and "Architecture: amd64" in info.stdout
    assert "python3-dolfinx-real" in info.stdout and "libxcb-cursor0" in info.stdout
    listing = run(["dpkg-deb", "--contents", str(DEB)]).stdout
    assert "./opt/twinplan/venv/" in listing and str(ROOT / "build") not in listing

    t0 = time.monotonic()
    inst = run(["apt-get", "install", "-y", "-q", "--no-install-recommends", str(DEB)], timeout=900)
    times["install_s"] = time.monotonic() - t0
    try:
        assert inst.returncode == 0, inst.stdout[-2000:] + inst.stderr[-2000:]
        for path in INSTALLED:
            assert Path(path).exists(), path
        desktop = Path("/usr/share/applications/twinplan.desktop").read_text()
        assert "Exec=twinplan-gui %f" in desktop and "application/x-twinplan-project" in desktop
        assert '<glob pattern="*.twin"/>' in Path("/usr/share/mime/packages/twinplan.xml").read_text()
        if shutil.which("desktop-file-validate"):
            check = run(["desktop-file-validate", "/usr/share/applications/twinplan.desktop"])
            assert check.returncode == 0, check.stdout + check.stderr

        version = run(["twinplan", "--version"], cwd=tmp_path)
        assert version.returncode == 0 and version.stdout.strip() == f"twinplan {__version__}"
        where = run(["/opt/twinplan/venv/bin/python", "-c", "import app, numpy; print(app.__file__, numpy.__version__)"],
                    cwd=tmp_path)
        assert where.stdout.startswith("/opt/twinplan/venv/lib/python3.11/site-packages/app/"), where
        assert where.stdout.split()[1].startswith("1."), "numpy<2 for Debian's dolfinx"
        fem = run(["/opt/twinplan/venv/bin/python", "-c", "import dolfinx; print(dolfinx.__version__)"], cwd=tmp_path)
        assert fem.returncode == 0 and fem.stdout.startswith("0.5"), fem.stderr[-1000:]
        if os.environ.get("DISPLAY"):
            gui = run(["/opt/twinplan/venv/bin/python", "-c",
                       "from PySide6.QtWidgets import QApplication; a = QApplication([]); "
                       "from app.ui.main_window import MainWindow; w = MainWindow(); w.show(); a.processEvents(); "
                       "print(len(w.actions_by_name)); w.close()"], cwd=tmp_path, timeout=120)
            assert gui.returncode == 0 and int(gui.stdout.split()[-1]) > 20, gui.stderr[-2000:]

        if DEMO_CASE.is_file():
            t0 = time.monotonic()
            demo = run(["twinplan", "demo", "--out", str(tmp_path / "demo"), "--json"], cwd=tmp_path)
            times["demo_s"] = time.monotonic() - t0
            assert demo.returncode == 0, demo.stderr[-2000:]
            summary = json.loads(demo.stdout)
            mesh = summary["mesh"]
            assert mesh["watertight"] and 2e5 < mesh["volume_mm3"] < 2e6, mesh  # a skull: 0.2-2 L of bone
            assert all(Path(f).exists() for f in summary["files"])
    finally:
        t0 = time.monotonic()
        rm = run(["apt-get", "purge", "-y", "-q", "twinplan"], timeout=900)
        times["remove_s"] = time.monotonic() - t0
        print("package timings:", {k: round(v, 1) for k, v in times.items()})
    assert rm.returncode == 0, rm.stderr[-2000:]
    assert not dpkg_installed()
    assert not Path("/opt/twinplan").exists()
    leftovers = [p for p in ("/usr/bin/twinplan", "/usr/bin/twinplan-gui", "/usr/share/applications/twinplan.desktop")
                 if Path(p).exists()]
    assert leftovers == []
