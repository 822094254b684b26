"""A real Orthanc PACS for tests: temporary config and storage, free ports, stopped at teardown.

Import the fixture into a test module (``from tests.pacs_server import orthanc  # noqa: F401``).
Tests using it are skipped only when the Orthanc binary is not installed.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ORTHANC = Path("/usr/sbin/Orthanc")
SERVER_AET = "ORTHANC"
CLIENT_AET = "TWINPLAN"
START_TIMEOUT_S = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class OrthancServer:
    """A running Orthanc: where it listens and where our client's C-MOVE storage SCP must listen."""

    host: str
    dicom_port: int
    http_port: int
    ae_title: str
    client_aet: str
    client_port: int
    folder: Path
    process: subprocess.Popen

    @property
    def node(self):
        from imaging.pacs import PacsNode

        return PacsNode(self.host, self.dicom_port, self.ae_title)

    def rest(self, path: str):
        """GET a REST resource (JSON) of the server."""
        with urllib.request.urlopen(f"http://{self.host}:{self.http_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def log_tail(self, n: int = 30) -> str:
        log = self.folder / "orthanc.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.exists() else ""


def start_orthanc(folder: Path) -> OrthancServer:
    """Start Orthanc with a private config and storage under ``folder``; wait until it answers."""
    folder.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port, client_port = free_port(), free_port(), free_port()
    config = {
        "Name": "TwinPlanTest",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "Plugins": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": SERVER_AET,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        # Query/retrieve only for the registered client below, as a real PACS would.
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "DicomModalities": {"twinplan": [CLIENT_AET, "127.0.0.1", client_port]},
        "AcceptedTransferSyntaxes": ["1.2.840.10008.1.*"],
        "DicomScuTimeout": 5,
        "SaveJobs": False,
        "StableAge": 1,
    }
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=1))
    log = open(folder / "orthanc.log", "wb")
    proc = subprocess.Popen([str(ORTHANC), str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    log.close()
    server = OrthancServer("127.0.0.1", dicom_port, http_port, SERVER_AET, CLIENT_AET, client_port, folder, proc)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with code {proc.returncode}:\n{server.log_tail()}")
        try:
            server.rest("/system")
            with socket.create_connection((server.host, dicom_port), timeout=1):
                return server
        except (OSError, urllib.error.URLError):
            time.sleep(0.1)
    stop_orthanc(server)
    raise RuntimeError(f"Orthanc did not answer within {START_TIMEOUT_S} s:\n{server.log_tail()}")


def stop_orthanc(server: OrthancServer) -> None:
    """Stop the server process (SIGTERM, then SIGKILL) and delete its storage."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)
    shutil.rmtree(server.folder / "storage", ignore_errors=True)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """A fresh, empty Orthanc for this test module."""
    if not ORTHANC.is_file():
        pytest.skip(f"Orthanc is not installed ({ORTHANC} missing; apt-get install orthanc)")
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    stop_orthanc(server)
