"""De-identification (PS3.15 Annex E basic profile + modified dates) on synthetic and real DICOM.

The acceptance test exports every shared series de-identified and searches
the raw bytes of every output file for every original identifier and UID.
"""
from __future__ import annotations

import logging
import re
from itertools import chain
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError

from imaging.deidentify import (
    DICOM_UID_ROOT, DeidentifyContext, deidentify_dataset, deidentify_folder, output_folder,
)
from imaging.dicom import load_dicom_folder, scan_dicom_folder
from imaging.errors import InputError
from tests.conftest import data_path

SERIES = {"philips": ("dcm_qa_ct_philips",), "ge_tilt": ("dcm_qa_ct_ge_tilt",), "totalseg": ("totalseg_ct", "dicom")}
#: Attributes whose original values must not survive anywhere in the output (raw bytes and datasets).
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "IssuerOfPatientID", "OtherPatientIDs",
               "InstitutionName", "InstitutionAddress", "StationName", "DeviceSerialNumber",
               "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "RequestingPhysician",
               "PerformedProcedureStepID", "StudyID", "AccessionNumber")
#: Values this short are checked in the datasets only: 2.25 UIDs and packed masks may hold them by chance.
MIN_BYTES_SEARCH = 5
KEY = "tests"


# -- helpers shared with tests/app/test_cli_export.py -------------------------------------------
def dicom_files(folder: Path) -> list[Path]:
    """DICOM files under ``folder`` (anything pydicom reads as DICOM)."""
    out = []
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            pydicom.dcmread(f, stop_before_pixels=True)
        except InvalidDicomError:
            continue
        out.append(f)
    return out


def all_elements(ds: Dataset):
    """Every element of a dataset, its sequences and its file meta."""
    return chain(getattr(ds, "file_meta", None) or [], ds.iterall())


def original_identifiers(folder: Path) -> tuple[set[str], set[str]]:
    """(identifying strings, instance UIDs) of every DICOM file under ``folder``.

    UIDs: every UI value, file meta included, except those under the DICOM root
    (SOP classes, transfer syntaxes and other well-known UIDs).
    """
    texts, uids = set(), set()
    for f in dicom_files(folder):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        for keyword in IDENTIFYING:
            value = str(ds.get(keyword, "") or "").strip()
            if value:
                texts.add(value)
                texts.update(part.strip() for part in re.split(r"[\r\n^]+", value) if len(part.strip()) > 2)
        for elem in all_elements(ds):
            if elem.VR == "UI" and elem.value:
                values = elem.value if elem.VM > 1 else [elem.value]
                uids.update(str(v) for v in values if str(v) and not str(v).startswith(DICOM_UID_ROOT))
    return texts, uids


def assert_no_identifiers(files: list[Path], texts: set[str], uids: set[str]) -> None:
    """No original identifier or UID in the bytes, names or datasets of ``files``; no private tags."""
    assert files
    needles = [t for t in texts if len(t) >= MIN_BYTES_SEARCH] + sorted(uids)
    for f in files:
        raw = f.read_bytes()
        leaked = [n for n in needles if n.encode("latin-1") in raw or n in str(f)]
        assert not leaked, f"{f.name} still holds {len(leaked)} original identifier(s)"
        for elem in all_elements(pydicom.dcmread(f)):
            assert elem.tag.group % 2 == 0, f"{f.name}: private tag {elem.tag}"
            if elem.VR == "SQ" or elem.value is None or isinstance(elem.value, bytes):
                continue
            value = str(elem.value)
            if elem.VR == "UI":  # new UIDs are long digit strings: short numbers may occur in them by chance
                assert value not in uids, f"{f.name}: original UID in {elem.keyword}"
                continue
            assert value.strip() not in texts, f"{f.name}: original value in {elem.keyword}"
            assert not any(t in value for t in texts if len(t) >= 3), f"{f.name}: identifier inside {elem.keyword}"


def _dates(ds: Dataset) -> dict[tuple, str]:
    """{(path of tags): date} of every DA element and the date part of every DT element."""
    found = {}

    def walk(d: Dataset, path: tuple) -> None:
        for elem in d:
            here = path + (elem.tag,)
            if elem.VR == "SQ":
                for i, item in enumerate(elem.value):
                    walk(item, here + (i,))
            elif elem.VR in ("DA", "DT") and elem.value:
                found[here] = str(elem.value)[:8]
    walk(ds, ())
    return found


# -- unit tests on a synthetic dataset -------------------------------------------------------------
def _synthetic(burned_in: str = "NO") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = "1.2.3.999"
    ds.file_meta.SourceApplicationEntityTitle = "SECRET_AE"
    ds.SOPClassUID, ds.SOPInstanceUID = pydicom.uid.CTImageStorage, "1.2.3.4.5.6"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "1.2.3.10", "1.2.3.11", "1.2.3.12"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "MRN12345", "19600102", "F"
    ds.PatientAge, ds.PatientWeight, ds.OtherPatientIDs = "063Y", "70", "OTHER99"
    ds.InstitutionName, ds.InstitutionAddress, ds.StationName = "General Hospital", "1 Main Street", "CTROOM7"
    ds.DeviceSerialNumber, ds.AccessionNumber, ds.StudyID = "SN-778899", "ACC4711", "STUDY42"
    ds.ReferringPhysicianName, ds.OperatorsName, ds.RequestingPhysician = "Who^Doctor", "Op^Erator", "Req^Uester"
    ds.StudyDescription, ds.SeriesDescription, ds.ImageComments = "private study", "private series", "note"
    ds.StudyDate, ds.SeriesDate, ds.ContentDate = "20200229", "20200229", "20200301"
    ds.StudyTime, ds.AcquisitionDateTime = "101500", "20200229101530.5+0100"
    ds.Modality, ds.Manufacturer, ds.BodyPartExamined = "CT", "ACME", "HEAD"
    ds.BurnedInAnnotation = burned_in
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = pydicom.uid.CTImageStorage, "1.2.3.4.5.6"
    ref.add_new(0x00091001, "LO", "private in sequence")
    ds.ReferencedImageSequence = [ref]  # top level: removed (X/Z/U*)
    nested = Dataset()
    inner = Dataset()
    inner.ReferencedSOPClassUID, inner.ReferencedSOPInstanceUID = pydicom.uid.CTImageStorage, "1.2.3.4.5.6"
    inner.InstanceCreationDate, inner.InstitutionName = "20200229", "General Hospital"
    nested.SourceImageSequence = [inner]  # nested: kept with mapped UIDs
    ds.DerivationImageSequence = [nested]
    ds.add_new(0x00291010, "OB", b"Doe^Jane")
    ds.add_new(0x00290010, "LO", "VENDOR")
    return ds


def test_profile_removes_blanks_and_replaces():
    ctx = DeidentifyContext.from_seed(KEY, date_offset_days=-100)
    ds = deidentify_dataset(_synthetic(), ctx)
    for keyword in ("PatientAge", "PatientWeight", "OtherPatientIDs", "InstitutionName", "InstitutionAddress",
                    "StationName", "DeviceSerialNumber", "OperatorsName", "RequestingPhysician",
                    "StudyDescription", "SeriesDescription", "ImageComments", "ReferencedImageSequence"):
        assert keyword not in ds, keyword
    for keyword in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName"):
        assert keyword in ds and not ds[keyword].value, keyword  # Z: present (type 2), empty
    assert ds.PatientID == ds.PatientName == ctx.pseudonym("MRN12345|") and ds.PatientID.startswith("ANON")
    assert not any(e.tag.is_private for e in ds.iterall())
    assert ds.PatientIdentityRemoved == "YES" and ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    assert ds.Manufacturer == "ACME" and ds.BodyPartExamined == "HEAD" and ds.StudyTime == "101500"
    # dates move by the offset (leap day included), the DT keeps its time and loses its UTC offset
    assert (ds.StudyDate, ds.ContentDate) == ("20191121", "20191122")
    assert ds.AcquisitionDateTime == "20191121101530.5"
    # one mapping for every occurrence of a UID, class UIDs kept, file meta rebuilt
    new_sop = ctx.uid_map["1.2.3.4.5.6"]
    inner = ds.DerivationImageSequence[0].SourceImageSequence[0]
    assert ds.SOPInstanceUID == inner.ReferencedSOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == new_sop
    assert inner.ReferencedSOPClassUID == ds.SOPClassUID == pydicom.uid.CTImageStorage
    assert inner.InstanceCreationDate == "20191121" and "InstitutionName" not in inner
    assert "SourceApplicationEntityTitle" not in ds.file_meta
    assert ds.file_meta.ImplementationClassUID == pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    assert ds.preamble == b"\x00" * 128


def test_uid_mapping_is_keyed_consistent_and_valid():
    a, b = DeidentifyContext.from_seed("one"), DeidentifyContext.from_seed("two")
    uid = "1.3.46.670589.33.1.27492712521914879309.27169771283235650014"
    assert a.map_uid(uid) == DeidentifyContext.from_seed("one").map_uid(uid) != b.map_uid(uid)
    new = a.map_uid(uid)
    assert re.fullmatch(r"2\.25\.[1-9][0-9]*", new) and len(new) <= 64
    assert a.map_uid(new) == new  # outputs are stable: a second pass keeps references valid
    assert DeidentifyContext().map_uid(uid) != DeidentifyContext().map_uid(uid)  # random key by default


def test_date_offset_per_patient():
    ctx = DeidentifyContext.from_seed(KEY)
    one, two = ctx.offset_days("A|"), ctx.offset_days("B|")
    assert -3650 <= one <= -365 and -3650 <= two <= -365 and one != two
    assert ctx.offset_days("A|") == one
    ds1, ds2 = _synthetic(), _synthetic()
    ds2.PatientID = "SOMEONE_ELSE"
    deidentify_dataset(ds1, ctx)
    deidentify_dataset(ds2, ctx)
    assert ds1.StudyDate != ds2.StudyDate and ds1.PatientID != ds2.PatientID
    assert ds1.StudyInstanceUID == ds2.StudyInstanceUID  # UIDs map the same whoever the patient


def test_burned_in_annotation_refused_unless_allowed(caplog):
    with pytest.raises(InputError, match="burned-in"):
        deidentify_dataset(_synthetic("YES"), DeidentifyContext())
    ctx = DeidentifyContext(allow_burned_in=True)
    with caplog.at_level(logging.WARNING):
        deidentify_dataset(_synthetic("YES"), ctx)
    assert any("burned-in" in w for w in ctx.warnings) and "burned-in" in caplog.text


def test_output_folder_is_all_or_nothing(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with output_folder(target) as tmp:
            (tmp / "a.dcm").write_bytes(b"x")
            raise RuntimeError("stop")
    assert not target.exists() and not list(tmp_path.iterdir())
    target.mkdir()
    (target / "old").write_text("x")
    with pytest.raises(InputError, match="not an empty folder"):
        with output_folder(target):
            pass


# -- acceptance: the shared series ---------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SERIES))
def test_shared_series_leave_no_identifiers(name, tmp_path):
    src = data_path(*SERIES[name])
    ctx = DeidentifyContext.from_seed(KEY)
    report = deidentify_folder(src, tmp_path / "out", ctx=ctx)
    texts, uids = original_identifiers(src)
    originals = dicom_files(src)
    assert len(report.files) == len(originals) and {Path(k["path"]).name for k in report.skipped} <= {
        "LICENSE", "SHA256SUMS"}
    assert_no_identifiers(report.files, texts, uids)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f.name for f in report.files]

    # one new series; every slice keeps its own (mapped) SOP instance UID
    outputs = [pydicom.dcmread(f) for f in report.files]
    (series_uid,) = {ds.SeriesInstanceUID for ds in outputs}
    assert series_uid.startswith("2.25.") and len({ds.SOPInstanceUID for ds in outputs}) == len(outputs)
    assert len({ds.StudyInstanceUID for ds in outputs}) == len({ds.FrameOfReferenceUID for ds in outputs}) == 1
    assert all(ds.PatientIdentityRemoved == "YES" for ds in outputs)

    # dates: the same original date becomes the same new date in every file, shifted by one offset
    by_sop = {}
    for f in originals:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        by_sop[ctx.map_uid(str(ds.file_meta.MediaStorageSOPInstanceUID))] = ds
    mapping, shifts = {}, set()
    for out in outputs:
        before, after = _dates(by_sop[out.SOPInstanceUID]), _dates(out)
        for path, new in after.items():
            old = before[path]
            mapping.setdefault(old, set()).add(new)
            shifts.add((np.datetime64(f"{new[:4]}-{new[4:6]}-{new[6:]}")
                        - np.datetime64(f"{old[:4]}-{old[4:6]}-{old[6:]}")).astype(int))
    assert all(len(news) == 1 for news in mapping.values())
    assert len(shifts) <= 1 and all(-3650 <= s <= -365 for s in shifts)
    if name != "ge_tilt":  # the GE series carries no dates at all
        assert mapping

    # the de-identified series imports to the same voxels and geometry
    original, copy_ = load_dicom_folder(src), load_dicom_folder(tmp_path / "out")
    assert np.array_equal(original.array, copy_.array)
    assert copy_.geometry.same_grid(original.geometry, tol=1e-4)


def test_failed_import_of_deidentified_corrupt_files_logs_no_identifiers(tmp_path, caplog, recwarn):
    src = data_path(*SERIES["philips"])
    texts, uids = original_identifiers(src)
    caplog.set_level(logging.DEBUG)
    report = deidentify_folder(src, tmp_path / "out", ctx=DeidentifyContext.from_seed(KEY))
    files = report.files
    files[3].write_bytes(files[3].read_bytes()[:-5000])  # truncated pixel data
    raw = bytearray(files[4].read_bytes())
    raw[300:700] = b"\xff" * 400  # garbled header
    files[4].write_bytes(bytes(raw))
    scan = scan_dicom_folder(tmp_path / "out")
    messages = [k.reason for k in scan.skipped]
    assert len(scan.skipped) == 2
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / files[3].name).write_bytes(files[3].read_bytes())
    with pytest.raises(InputError) as exc:
        load_dicom_folder(broken)
    messages.append(str(exc.value))
    # a corrupt original fed to the de-identifier fails without quoting it either
    bad = tmp_path / "bad_original"
    bad.mkdir()
    (bad / "I10").write_bytes(Path(src, "I10").read_bytes()[:200])
    with pytest.raises(InputError) as exc:
        deidentify_folder(bad, tmp_path / "never", ctx=DeidentifyContext())
    messages.append(str(exc.value))
    messages += [r.getMessage() for r in caplog.records] + [str(w.message) for w in recwarn]
    text = "\n".join(messages)
    leaked = [t for t in texts | uids if len(t) >= 3 and t in text]
    assert not leaked, f"{len(leaked)} identifier(s) in messages"
    assert not (tmp_path / "never").exists()
