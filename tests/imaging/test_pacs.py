"""PACS round trips against a real Orthanc (tests/pacs_server.py) with real CT series.

The Philips series (uncompressed) and the TotalSegmentator series (JPEG 2000,
empty patient tags and UIDs) are sent with C-STORE, found with C-FIND and
fetched back with C-GET / C-MOVE; the voxels must equal those loaded from the
shared folders.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from concurrent.futures import CancelledError
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from imaging.dicom import load_dicom_folder
from imaging.errors import InputError
from imaging.pacs import PacsNode, echo, find_series, find_studies, get_series, move_series, store_files
from tests.conftest import ROOT, data_path
from tests.pacs_server import free_port, orthanc  # noqa: F401 -- the fixture

PHILIPS = ("dcm_qa_ct_philips",)
TOTALSEG = ("totalseg_ct", "dicom")


@pytest.fixture(scope="module")
def stored(orthanc):  # noqa: F811
    """Both series sent to the server once; the two store reports."""
    return {"philips": store_files(orthanc.node, [data_path(*PHILIPS)]),
            "totalseg": store_files(orthanc.node, [data_path(*TOTALSEG)])}


@pytest.fixture(scope="module")
def uids(orthanc, stored):  # noqa: F811
    """(study UID, series UID) of each stored series, found through C-FIND."""
    out = {}
    for name, query in (("philips", {"patient_id": "PLASTIC"}), ("totalseg", {"date_from": "20221208"})):
        (study,) = find_studies(orthanc.node, **query)
        (series,) = find_series(orthanc.node, study["StudyInstanceUID"])
        out[name] = (study["StudyInstanceUID"], series["SeriesInstanceUID"])
    return out


def test_store_reports_every_file(orthanc, stored):  # noqa: F811
    philips, totalseg = stored["philips"], stored["totalseg"]
    assert (philips["stored"], philips["failed"], philips["skipped"]) == (28, 0, 2)  # + LICENSE, SHA256SUMS
    assert {Path(f["path"]).name for f in philips["failures"]} == {"LICENSE", "SHA256SUMS"}
    assert philips["uids_filled"] == 0
    # Empty SOP Class/Instance, Study and Series UIDs: filled in, or the PACS would refuse them.
    assert (totalseg["stored"], totalseg["failed"], totalseg["uids_filled"]) == (20, 0, 20)
    assert orthanc.rest("/statistics")["CountInstances"] == 48


def test_echo(orthanc):  # noqa: F811
    seconds = echo(orthanc.node)
    assert 0.0 < seconds < 5.0


def test_find_studies_by_patient_date_and_modality(orthanc, stored):  # noqa: F811
    node = orthanc.node
    (study,) = find_studies(node, patient_id="PLASTIC")
    assert study["PatientName"] == "HEAD" and study["StudyDate"] == "20150206"
    assert study["ModalitiesInStudy"] == ["CT"]
    assert study["NumberOfStudyRelatedSeries"] == 1 and study["NumberOfStudyRelatedInstances"] == 28
    assert [s["PatientID"] for s in find_studies(node, patient_name="HE*")] == ["PLASTIC"]
    assert len(find_studies(node, date_from="20150101", date_to="2015-12-31", modality="ct")) == 1
    assert len(find_studies(node)) == 2
    assert find_studies(node, modality="MR") == []
    assert find_studies(node, patient_id="NOBODY") == []


def test_find_series_lists_instances(orthanc, uids):  # noqa: F811
    (series,) = find_series(orthanc.node, uids["philips"][0])
    assert series["NumberOfSeriesRelatedInstances"] == 28
    assert series["Modality"] == "CT" and series["SeriesNumber"] == "201"
    assert series["SeriesInstanceUID"] == load_dicom_folder(data_path(*PHILIPS)).series_uid


@pytest.mark.parametrize("name,parts,n_files", [("philips", PHILIPS, 28), ("totalseg", TOTALSEG, 20)])
def test_get_series_gives_identical_voxels(orthanc, uids, tmp_path, name, parts, n_files):  # noqa: F811
    fractions = []
    files = get_series(orthanc.node, *uids[name], tmp_path / "out", progress=lambda f, m: fractions.append(f))
    assert len(files) == n_files and sorted(os.listdir(tmp_path / "out")) == sorted(f.name for f in files)
    assert fractions[-1] == 1.0
    original, retrieved = load_dicom_folder(data_path(*parts)), load_dicom_folder(tmp_path / "out")
    assert np.array_equal(retrieved.array, original.array)
    assert retrieved.geometry.spacing_xyz == original.geometry.spacing_xyz
    assert retrieved.geometry.origin_xyz == original.geometry.origin_xyz
    # The filled-in series UID is the one imaging.dicom derives for the original files.
    assert retrieved.series_uid == original.series_uid
    if name == "totalseg":  # offered its own syntax, the PACS sends JPEG 2000 untouched
        assert pydicom.dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID == JPEG2000Lossless


def test_move_series_to_temporary_storage_scp(orthanc, uids, tmp_path):  # noqa: F811
    files = move_series(orthanc.node, *uids["philips"], tmp_path, listen_port=orthanc.client_port,
                        calling_ae=orthanc.client_aet)
    assert len(files) == 28
    assert np.array_equal(load_dicom_folder(tmp_path).array, load_dicom_folder(data_path(*PHILIPS)).array)


def test_cancel_during_get_leaves_no_files(orthanc, uids, tmp_path):  # noqa: F811
    fractions = []
    with pytest.raises(CancelledError):
        get_series(orthanc.node, *uids["philips"], tmp_path, progress=lambda f, m: fractions.append(f),
                   cancelled=lambda: len(fractions) >= 5)
    assert 0 < fractions[-1] < 1.0  # stopped midway
    assert os.listdir(tmp_path) == []  # not even the hidden staging folder
    assert echo(orthanc.node) > 0  # the server is fine after our abort


def test_network_errors_name_the_server(orthanc, uids, tmp_path):  # noqa: F811
    port = free_port()
    with pytest.raises(InputError, match=rf"^cannot connect to PACS 127\.0\.0\.1:{port} ORTHANC: connection refused$"):
        echo(PacsNode("127.0.0.1", port, "ORTHANC"))
    with pytest.raises(InputError, match=rf"127\.0\.0\.1:{orthanc.dicom_port} NOTORTHANC rejected .*called ae"):
        echo(PacsNode("127.0.0.1", orthanc.dicom_port, "NOTORTHANC"))
    # Query/retrieve is allowed only for the AE title registered on the server.
    with pytest.raises(InputError, match="aborted the C-FIND: does it allow AE title STRANGER"):
        find_studies(orthanc.node, calling_ae="STRANGER")
    with pytest.raises(InputError, match=rf"{orthanc.dicom_port} ORTHANC: C-GET failed with status 0x"):
        get_series(orthanc.node, uids["philips"][0], "1.2.3.4", tmp_path)
    assert os.listdir(tmp_path) == []


def test_no_patient_identifiers_in_logs(orthanc, uids, tmp_path, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    studies = find_studies(orthanc.node, patient_name="HEAD", patient_id="PLASTIC")
    get_series(orthanc.node, studies[0]["StudyInstanceUID"], uids["philips"][1], tmp_path)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert uids["philips"][1] in text  # UIDs and counts are logged at debug level...
    assert "PLASTIC" not in text and "HEAD" not in text  # ...patient names and IDs never


@pytest.mark.parametrize("call,match", [
    (lambda n: find_studies(n, date_from="2015-13-01"), "date_from '2015-13-01': expected a date YYYYMMDD"),
    (lambda n: find_studies(n, date_from="20160101", date_to="20150101"), "date_from is after date_to"),
    (lambda n: find_studies(n, modality="C T"), "modality 'C T'"),
    (lambda n: find_series(n, "1.2.abc"), "study UID '1.2.abc': not a DICOM UID"),
    (lambda n: echo(n, calling_ae="A" * 17), "calling AE title"),
    (lambda n: PacsNode("localhost", 70000, "X"), "PACS port 70000"),
    (lambda n: store_files(n, ["/no/such/folder"]), "/no/such/folder: no such file or folder"),
])
def test_bad_parameters_fail_before_connecting(call, match):
    with pytest.raises(InputError, match=match):
        call(PacsNode("127.0.0.1", 9, "NOWHERE"))


def _cli(*args: str, verbose: bool = False) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "app.cli", *(["-v"] if verbose else []), "pacs", *args]
    return subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_cli_round_trip(orthanc, uids, tmp_path):  # noqa: F811
    server = ["--host", "127.0.0.1", "--port", str(orthanc.dicom_port), "--aet", "ORTHANC", "--json"]
    closed = free_port()
    # Independent commands run side by side: each pays the interpreter start-up.
    procs = {
        "echo": _cli("echo", *server),
        "find": _cli("find", *server, "--patient-id", "PLASTIC", "--date-from", "20150101", verbose=True),
        "refused": _cli("echo", "--host", "127.0.0.1", "--port", str(closed), "--aet", "ORTHANC", "--json"),
        "store": _cli("store", *server, str(data_path(*PHILIPS) / "I10")),
    }
    results = {name: _finish(p) for name, p in procs.items()}
    code, out, err = results["echo"]
    assert code == 0, err
    assert json.loads(out)["ok"] is True and json.loads(out)["port"] == orthanc.dicom_port
    code, out, err = results["find"]
    assert code == 0, err
    (study,) = json.loads(out)["studies"]
    assert (study["PatientID"], study["StudyInstanceUID"]) == ("PLASTIC", uids["philips"][0])
    assert "PLASTIC" not in err and "HEAD" not in err  # printed as asked, never logged (even with -v)
    code, out, err = results["refused"]
    assert code == 2 and out == ""
    assert err.splitlines() == [f"twinplan pacs: cannot connect to PACS 127.0.0.1:{closed} ORTHANC: connection refused"]
    code, out, err = results["store"]
    assert code == 0, err
    assert json.loads(out)["stored"] == 1
    code, out, err = _finish(_cli("find", *server, "--study", study["StudyInstanceUID"]))
    assert code == 0, err
    (series,) = json.loads(out)["series"]
    assert series["NumberOfSeriesRelatedInstances"] == 28
    code, out, err = _finish(_cli("get", *server, "--study", study["StudyInstanceUID"],
                                  "--series", series["SeriesInstanceUID"], "--out", str(tmp_path / "get")))
    assert code == 0, err
    result = json.loads(out)
    assert (result["files"], result["folder"], result["method"]) == (28, str(tmp_path / "get"), "C-GET")
    assert len(os.listdir(tmp_path / "get")) == 28
