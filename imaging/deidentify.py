"""De-identify DICOM: PS3.15 Annex E Basic Application Level Confidentiality Profile (113100).

Table E.1-1 applies to the dataset and, recursively, every sequence item; private attributes, curves,
overlays and unknown public attributes go. With the Modified Dates option (113107) dates (DA, DT) shift
by a keyed per-patient offset and times stay; every instance UID (UI values outside the DICOM root, class
attributes excepted) is replaced through a keyed mapping, so references between de-identified files stay
consistent. File meta and preamble are rebuilt. Logs and errors never quote attribute values.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import logging
import os
import re
import secrets
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from imaging.dicom import DICOMDIR_SOP_CLASS, derive_series_uid
from imaging.errors import InputError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress

log = logging.getLogger(__name__)

# --- Table E.1-1, basic profile, by action. Tokens are pydicom keywords or 8-digit hex tags.
#: X, X/Z, X/D, X/Z/D: remove (none is required by the CT / SEG IODs we write). Ranges cover groups the table
#: lists member by member (GPS, study scheduling, visit, topic, results); the whole patient group 0010 goes
#: except the Z attributes below, which is stricter than the table.
_REMOVE = """
00160070-0016008E 00100000-0010FFFF 00320000-0032FFFF 00380000-0038FFFF 00880000-0088FFFF 40080000-4008FFFF
AcquisitionComments AcquisitionContextSequence AcquisitionDeviceProcessingDescription AcquisitionProtocolDescription
ActualHumanPerformersSequence AddressTrial AdmittingDiagnosesCodeSequence AdmittingDiagnosesDescription
AffectedSOPInstanceUID AnnotationGroupDescription ApprovalStatusDateTime Arbitrary AssertionExpirationDateTime
AuthorObserverSequence BarcodeValue BeamDescription BolusDescription CalibrationDate CalibrationTime CameraOwnerName
CassetteID CertifiedTimestamp ClinicalTrialProtocolEthicsCommitteeApprovalNumber ClinicalTrialSeriesDescription
ClinicalTrialSeriesID ClinicalTrialTimePointDescription CommentsOnRadiationDose CommentsOnThePerformedProcedureStep
CompensatorDescription ConfidentialityConstraintOnPatientDataDescription ConsultingPhysicianIdentificationSequence
ContainerComponentID ContainerDescription ContentCreatorIdentificationCodeSequence ContrastBolusStartTime
ContrastBolusStopTime ContributionDateTime ContributionDescription CreationDate CreationTime CurrentObserverTrial
CurveDate CurveTime CustodialOrganizationSequence DataSetTrailingPadding DateOfDocumentOrVerbalTransactionTrial
DateOfLastCalibration DateOfLastDetectorCalibration DateOfSecondaryCapture DateTimeOfLastCalibration
DecompositionDescription DerivationDescription DetectorID DeviceDescription DeviceSerialNumber DeviceSettingDescription
DigitalSignaturesSequence DisplacementReferenceLabel DoseReferenceDescription EncryptedAttributesSequence
EndAcquisitionDateTime EntityDescription EntityName EquipmentFrameOfReferenceDescription
EthicsCommitteeApprovalEffectivenessEndDate EthicsCommitteeApprovalEffectivenessStartDate ExpectedCompletionDateTime
FilterLookupTableDescription FindingsGroupRecordingDateTrial FindingsGroupRecordingTimeTrial FirstTreatmentDate
FixationDeviceDescription FractionGroupDescription FrameComments GantryID GeneratorID HL7DocumentEffectiveTime
HumanPerformerName HumanPerformerOrganization IdentifyingComments ImageComments ImagePresentationComments
ImagingServiceRequestComments InstanceCoercionDateTime InstanceOriginStatus InstitutionAddress
InstitutionalDepartmentName InstitutionalDepartmentTypeCodeSequence InstitutionCodeSequence InstitutionName
IntendedFractionStartTime IntendedPhaseEndDate IntendedPhaseStartDate IntendedRecipientsOfResultsIdentificationSequence
InterventionDrugStartTime InterventionDrugStopTime IssueDateOfImagingServiceRequest IssueTimeOfImagingServiceRequest
LabelText LensMake LensModel LensSerialNumber LensSpecification LongDeviceDescription MAC MakerNote
ModifiedAttributesSequence ModifiedImageDate ModifiedImageDescription ModifiedImageTime ModifyingDeviceID
MostRecentTreatmentDate MultienergyAcquisitionDescription NameOfPhysiciansReadingStudy
NamesOfIntendedRecipientsOfResults NetworkID NonconformingDataElementValue NonconformingModifiedAttributesSequence
ObservationDateTrial ObservationDateTime ObservationStartDateTime ObservationTimeTrial OperatorIdentificationSequence
OperatorsName OrderCallbackPhoneNumber OrderCallbackTelecomInformation OrderEnteredBy OrderEntererLocation
OriginalAttributesSequence Originator OverlayDate OverlayTime ParticipantSequence PatientSetupPhotoDescription
PatientTransportArrangements PatientTreatmentPreparationMethodDescription
PatientTreatmentPreparationProcedureParameterDescription PerformedLocation PerformedProcedureStepDescription
PerformedProcedureStepEndDate PerformedProcedureStepEndDateTime PerformedProcedureStepEndTime PerformedProcedureStepID
PerformedProcedureStepStartDate PerformedProcedureStepStartDateTime PerformedProcedureStepStartTime
PerformedStationAETitle PerformedStationGeographicLocationCodeSequence PerformedStationName
PerformedStationNameCodeSequence PerformingPhysicianName PerformingPhysicianIdentificationSequence PersonAddress
PersonTelecomInformation PersonTelephoneNumbers PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
PhysiciansReadingStudyIdentificationSequence PlateID PositionAcquisitionTemplateDescription
PositionAcquisitionTemplateName PreMedication PrescriptionDescription PresentationCreationDate PresentationCreationTime
PriorTreatmentDoseDescription ProcedureStepCancellationDateTime ProductExpirationDateTime ProtocolName
PyramidDescription PyramidLabel RadiopharmaceuticalStartDateTime RadiopharmaceuticalStartTime
RadiopharmaceuticalStopDateTime RadiopharmaceuticalStopTime ReasonForOmissionDescription
ReasonForRequestedProcedureCodeSequence ReasonForTheImagingServiceRequest ReasonForTheRequestedProcedure ReceivingAE
ReferencedDigitalSignatureSequence ReferencedPatientSequence ReferencedPerformedProcedureStepSequence
ReferencedSOPInstanceMACSequence ReferencedStudySequence ReferringPhysicianAddress ReferringPhysicianTelephoneNumbers
ReferringPhysicianIdentificationSequence RequestAttributesSequence RequestedProcedureComments RequestedProcedureID
RequestedProcedureLocation RequestedSeriesDescription RequestingAE RespiratoryMotionCompensationTechniqueDescription
RetrieveAETitle ReviewerName ROIDescription ROIGenerationDescription ROIObservationDescription ROIObservationLabel
RTPlanDate RTPlanDescription RTPlanName RTPlanTime RTTreatmentApproachLabel ScheduledHumanPerformersSequence
ScheduledPerformingPhysicianName ScheduledPerformingPhysicianIdentificationSequence ScheduledProcedureStepDescription
ScheduledProcedureStepEndDate ScheduledProcedureStepEndTime ScheduledProcedureStepExpirationDateTime
ScheduledProcedureStepID ScheduledProcedureStepLocation ScheduledProcedureStepModificationDateTime
ScheduledProcedureStepStartDate ScheduledProcedureStepStartDateTime ScheduledProcedureStepStartTime
ScheduledStationAETitle ScheduledStationGeographicLocationCodeSequence ScheduledStationName
ScheduledStationNameCodeSequence SeriesDescription SetupTechniqueDescription ShieldingDeviceDescription SlideIdentifier
SOPAuthorizationDateTime SourceManufacturer SourceSerialNumber SpecimenAccessionNumber SpecimenDetailedDescription
SpecimenShortDescription StartAcquisitionDateTime StationAETitle StationName StructureSetDescription StructureSetName
StudyDescription SubstanceAdministrationDateTime TelephoneNumberTrial TemplateLocalVersion TemplateVersion TextComments
TextString TimeOfDocumentCreationOrVerbalTransactionTrial TimeOfLastCalibration TimeOfLastDetectorCalibration
TimeOfSecondaryCapture TimezoneOffsetFromUTC TransducerIdentificationSequence TreatmentDate TreatmentMachineName
TreatmentSite TreatmentSites TreatmentTime UDISequence UniqueDeviceIdentifier VerbalSourceTrial
VerbalSourceIdentifierCodeSequenceTrial WaveformFilterDescription XRayDetectorLabel 0040B034 00081304 00120022 00120073
00120032 00120041 00120043 00120055 0040A034 0040A035 0040B03F 0040B03B 00181204 00181205 00081301 00081302 00081303
0040B036 3006004D 3006002D 3006004E 3006002E 00120023
"""
#: Z and Z/D: keep with an empty value (PatientName / PatientID get a keyed pseudonym instead).
_EMPTY = """
AccessionNumber CalibrationDateTime ClinicalTrialCoordinatingCenterName ClinicalTrialProtocolName ClinicalTrialSiteID
ClinicalTrialSiteName ClinicalTrialTimePointID ConceptualVolumeCombinationDescription ConceptualVolumeDescription
ConsultingPhysicianName ContentCreatorName ContrastBolusAgent DeviceAlternateIdentifier
FillerOrderNumberImagingServiceRequest FractionationNotes IssuerOfTheContainerIdentifierSequence
IssuerOfTheSpecimenIdentifierSequence ManufacturerDeviceIdentifier ParticipationDateTime PatientBirthDate PatientName
PatientID PatientSex PlacerOrderNumberImagingServiceRequest PrescriptionNotes PrescriptionNotesSequence
RadiationGenerationModeDescription ReasonForSuperseding ReferringPhysicianName ReviewDate ReviewTime ROIInterpreter
ROIName RTAccessoryDeviceSlotID RTAccessoryHolderSlotID RTPhysicianIntentNarrative SourceOfPreviousValues
SpecimenPreparationSequence StructureSetDate StructureSetTime StudyID TreatmentTechniqueNotes
VerifyingObserverIdentificationCodeSequence
"""
#: D: dummy value of the VR; sequences and binary values with D are removed (structured content is out of
#: scope). D entries of VR DA, DT, TM are left out: dates are shifted and times kept like any other.
_DUMMY = """
AcquisitionFieldOfViewLabel AnnotationGroupLabel CertificateOfSigner ClinicalTrialProtocolEthicsCommitteeName
ClinicalTrialProtocolID ClinicalTrialSponsorName ClinicalTrialSubjectID ClinicalTrialSubjectReadingID
ContainerIdentifier ContentSequence DestinationAE DeviceLabel EncapsulatedDocument EntityLabel EntityLongLabel
FlowIdentifier FlowIdentifierSequence FrameOriginTimestamp GraphicAnnotationSequence InterlockDescription
InterlockOriginDescription ModifyingSystem PersonIdentificationCodeSequence PersonName RadiationDoseIdentificationLabel
RadiationDoseInVivoMeasurementLabel RadiationGenerationModeLabel ReasonForTheAttributeModification RTPlanLabel
RTPrescriptionLabel RTToleranceSetLabel SelectorAEValue SelectorASValue SelectorLOValue SelectorLTValue SelectorOBValue
SelectorPNValue SelectorSHValue SelectorSTValue SelectorUNValue SelectorURValue SelectorUTValue SourceIdentifier
SpecimenIdentifier StructureSetLabel TreatmentPositionGroupLabel TreatmentToleranceViolationDescription
UserContentLabel UserContentLongLabel VerifyingObserverName VerifyingObserverSequence VerifyingOrganization
XRayDetectorID XRaySourceID
"""
#: X/Z/U*: removed in the top-level dataset (type 3 there), kept with remapped UIDs when nested
#: (e.g. the source references inside a SEG's functional groups).
_REMOVE_TOP_LEVEL = "ReferencedImageSequence SourceImageSequence"
#: Kept (dates shifted, times kept) under the Modified Dates option, overriding X/Z/D above.
_RETAIN_MODIFIED = ("StudyDate SeriesDate AcquisitionDate ContentDate AcquisitionDateTime InstanceCreationDate "
                    "StudyTime SeriesTime AcquisitionTime ContentTime InstanceCreationTime")
#: UI attributes naming classes or encodings, not instances: never remapped.
CLASS_UID_KEYWORDS = frozenset(
    "SOPClassUID MediaStorageSOPClassUID ReferencedSOPClassUID ReferencedSOPClassUIDInFile TransferSyntaxUID "
    "ReferencedTransferSyntaxUIDInFile SOPClassesInStudy RelatedGeneralSOPClassUID "
    "OriginalSpecializedSOPClassUID CodingSchemeUID ContextGroupExtensionCreatorUID".split())
DICOM_UID_ROOT = "1.2.840.10008."
#: De-identification Method Code Sequence entries (DCM, CID 7050).
METHOD_CODES = (("113100", "Basic Application Confidentiality Profile"),
                ("113107", "Retain Longitudinal With Modified Dates Option"))
METHOD_TEXT = "TwinPlan Basic Profile, Modified Dates"
_DUMMY_VALUES = {"AS": "000D", "DS": "0", "IS": "0"}  # other text VRs get "ANONYMIZED"
_TEXT_VRS = {"AE", "AS", "CS", "DS", "IS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"}
_OFFSET_RANGE_DAYS = (365, 3650)


def _tags(block: str) -> tuple[frozenset[int], tuple[tuple[int, int], ...]]:
    """Single tags and inclusive tag ranges (``GGGGEEEE-GGGGEEEE``) of a table block."""
    tokens = block.split()
    tags = {int(t, 16) if re.fullmatch(r"[0-9A-F]{8}", t) else tag_for_keyword(t) for t in tokens if "-" not in t}
    if None in tags:
        raise ValueError("profile table: unknown keyword")
    return frozenset(tags), tuple((int(t[:8], 16), int(t[9:], 16)) for t in tokens if "-" in t)


REMOVE_TAGS, REMOVE_RANGES = _tags(_REMOVE)
EMPTY_TAGS, DUMMY_TAGS = _tags(_EMPTY)[0], _tags(_DUMMY)[0]
REMOVE_TOP_LEVEL_TAGS, RETAIN_MODIFIED_TAGS = _tags(_REMOVE_TOP_LEVEL)[0], _tags(_RETAIN_MODIFIED)[0]


@dataclass
class DeidentifyContext:
    """Keyed, consistent replacements shared by every dataset of one export.

    Parameters
    ----------
    key : bytes
        HMAC secret for UIDs, pseudonyms and date shifts; random by default, reuse it to map
        inputs the same way across exports. Never written anywhere.
    date_offset_days : int, optional
        Fixed date shift (days) for every patient; by default a keyed shift of -3650..-365 days each.
    allow_burned_in : bool
        Export images flagged ``BurnedInAnnotation = YES`` with a warning instead of refusing them.
    """

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    date_offset_days: Optional[int] = None
    allow_burned_in: bool = False
    uid_map: dict[str, str] = field(default_factory=dict, repr=False)
    date_offsets: dict[str, int] = field(default_factory=dict, repr=False)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._outputs: set[str] = set(self.uid_map.values())

    @classmethod
    def from_seed(cls, seed: str | bytes, **kwargs) -> "DeidentifyContext":
        """Context keyed by ``seed`` (reproducible mappings, e.g. in tests)."""
        raw = seed if isinstance(seed, bytes) else str(seed).encode("utf-8")
        return cls(key=hashlib.sha256(b"twinplan-deid|" + raw).digest(), **kwargs)

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self.key, f"{purpose}|{value}".encode("utf-8", "replace"), hashlib.sha256).digest()

    def map_uid(self, uid: str) -> str:
        """Replacement ``2.25.<uuid>`` for ``uid``: same input, same output; outputs map to themselves."""
        uid = str(uid).strip().rstrip("\x00")
        if not uid or uid in self._outputs:
            return uid
        if uid not in self.uid_map:
            raw = bytearray(self._digest("uid", uid)[:16])
            raw[6] = (raw[6] & 0x0F) | 0x80  # UUID version 8 (custom), RFC 9562 variant
            raw[8] = (raw[8] & 0x3F) | 0x80
            self.uid_map[uid] = f"2.25.{uuid.UUID(bytes=bytes(raw)).int}"
            self._outputs.add(self.uid_map[uid])
        return self.uid_map[uid]

    def offset_days(self, patient_key: str) -> int:
        """Date shift (days, negative) for one patient."""
        if self.date_offset_days is not None:
            return int(self.date_offset_days)
        if patient_key not in self.date_offsets:
            lo, hi = _OFFSET_RANGE_DAYS
            n = int.from_bytes(self._digest("date", patient_key)[:8], "big")
            self.date_offsets[patient_key] = -(lo + n % (hi - lo + 1))
        return self.date_offsets[patient_key]

    def pseudonym(self, patient_key: str) -> str:
        """Stable replacement for Patient ID and Patient's Name (16 characters)."""
        return "ANON" + self._digest("patient", patient_key).hex()[:12].upper()


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _shift_date(value: str, days: int) -> str:
    try:
        day = _dt.datetime.strptime(value.strip().replace(".", "")[:8], "%Y%m%d").date()  # "." : ACR-NEMA
    except ValueError:
        return ""  # partial or malformed: cannot be shifted, so it goes
    return (day + _dt.timedelta(days=days)).strftime("%Y%m%d")


def _shift_datetime(value: str, days: int) -> str:
    m = re.match(r"^(\d{8})([0-9.]*)", value.strip())
    date = _shift_date(m.group(1), days) if m else ""
    return date + m.group(2) if date else ""  # any UTC offset suffix goes (TimezoneOffsetFromUTC is X)


def _map_values(elem, fn) -> None:
    value = elem.value
    if value is None or value == "":
        return
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        elem.value = [fn(str(v)) for v in value]
    else:
        elem.value = fn(str(value))


def _retain(elem, ctx: DeidentifyContext, days: int) -> None:
    """Keep an element, replacing what identifies: dates shifted, instance UIDs mapped."""
    if elem.VR == "DA":
        _map_values(elem, lambda v: _shift_date(v, days))
    elif elem.VR == "DT":
        _map_values(elem, lambda v: _shift_datetime(v, days))
    elif elem.VR == "UI" and elem.keyword not in CLASS_UID_KEYWORDS:
        _map_values(elem, lambda v: v if v.startswith(DICOM_UID_ROOT) else ctx.map_uid(v))


def _removed(tag: int, elem, depth: int) -> bool:
    group, element = tag >> 16, tag & 0xFFFF
    return (group % 2 == 1  # private
            or element == 0  # group length
            or (group & 0xFF00) == 0x5000  # curves
            or ((group & 0xFF00) == 0x6000 and element in (0x3000, 0x4000))  # overlay data and comments
            or (elem.VR == "UN" and not elem.keyword)  # unknown public attribute: content unknown
            or (depth == 0 and tag in REMOVE_TOP_LEVEL_TAGS)
            or tag in REMOVE_TAGS or any(lo <= tag <= hi for lo, hi in REMOVE_RANGES))


def _clean(ds: Dataset, ctx: DeidentifyContext, days: int, depth: int) -> None:
    for tag in list(ds.keys()):
        elem = ds[tag]
        if tag in RETAIN_MODIFIED_TAGS:
            _retain(elem, ctx, days)
        elif tag in EMPTY_TAGS:
            elem.value = [] if elem.VR == "SQ" else None
        elif tag in DUMMY_TAGS and elem.VR in _TEXT_VRS:
            elem.value = _DUMMY_VALUES.get(elem.VR, "ANONYMIZED")
        elif _removed(tag, elem, depth) or tag in DUMMY_TAGS:  # D sequences/binary: structured content out of scope
            del ds[tag]
        elif elem.VR == "SQ":
            for item in elem.value:
                _clean(item, ctx, days, depth + 1)
        else:
            _retain(elem, ctx, days)


def _fill_type1_uids(ds: Dataset, ctx: DeidentifyContext) -> None:
    """Give empty SOP class/instance, series and study UIDs values derived from the original attributes."""
    meta = getattr(ds, "file_meta", None)
    if not _text(ds, "SOPClassUID") and meta is not None and _text(meta, "MediaStorageSOPClassUID"):
        ds.SOPClassUID = _text(meta, "MediaStorageSOPClassUID")
    if "SOPInstanceUID" in ds and not _text(ds, "SOPInstanceUID"):
        original = _text(meta, "MediaStorageSOPInstanceUID") if meta is not None else ""
        ds.SOPInstanceUID = original or ctx.map_uid("sop|" + secrets.token_hex(16))
    if "SeriesInstanceUID" in ds and not _text(ds, "SeriesInstanceUID"):  # the importer's grouping recipe
        keys = ("StudyInstanceUID", "FrameOfReferenceUID", "SeriesNumber", "Modality", "SeriesDate", "SeriesTime")
        ds.SeriesInstanceUID = derive_series_uid("|".join(_text(ds, k) for k in keys) + "|"
                                                 + _text(ds, "SeriesDescription"))
    if "StudyInstanceUID" in ds and not _text(ds, "StudyInstanceUID"):
        keys = ("PatientID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID")
        ds.StudyInstanceUID = derive_series_uid("study|" + "|".join(_text(ds, k) for k in keys))


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def deidentify_dataset(ds: Dataset, ctx: DeidentifyContext) -> Dataset:
    """De-identify one dataset in place (basic profile + modified dates option).

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        Dataset to clean; its ``file_meta`` (if any) and preamble are rebuilt.
    ctx : DeidentifyContext
        Shared by all datasets of one export so UIDs, pseudonyms and dates stay consistent.

    Returns
    -------
    pydicom.dataset.Dataset
        ``ds`` itself.

    Raises
    ------
    InputError
        If ``BurnedInAnnotation`` is YES and ``ctx.allow_burned_in`` is false.
    """
    if _text(ds, "BurnedInAnnotation").upper() == "YES":
        if not ctx.allow_burned_in:
            raise InputError("image has burned-in annotation (BurnedInAnnotation = YES): its pixels may show "
                             "identifiers; refused (allow burned-in annotation explicitly to export it)")
        message = "burned-in annotation: pixel data may show identifiers (exported on request)"
        if message not in ctx.warnings:
            ctx.warnings.append(message)
            log.warning(message)
    patient_key = f"{_text(ds, 'PatientID')}|{_text(ds, 'IssuerOfPatientID')}"
    days, pseudonym = ctx.offset_days(patient_key), ctx.pseudonym(patient_key)
    _fill_type1_uids(ds, ctx)
    _clean(ds, ctx, days, 0)
    ds.PatientID = ds.PatientName = pseudonym
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD_TEXT
    ds.DeidentificationMethodCodeSequence = [_code(value, meaning) for value, meaning in METHOD_CODES]
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "SOPInstanceUID" in ds:  # PS3.15 E.1.1 (7): replace the meta information
        new_meta = FileMetaDataset()
        new_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        new_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        new_meta.TransferSyntaxUID = _text(meta, "TransferSyntaxUID") or pydicom.uid.ExplicitVRLittleEndian
        new_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        new_meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
        ds.file_meta = new_meta
    ds.preamble = b"\x00" * 128
    return ds


@dataclass
class DeidentifyReport:
    """What :func:`deidentify_folder` wrote and skipped."""

    files: list[Path] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path": input path relative to src, "reason"}
    series: dict[str, int] = field(default_factory=dict)  # new SeriesInstanceUID -> number of files
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"files": [str(f) for f in self.files], "n_files": len(self.files), "deidentified": True,
                "series": [{"series_uid": uid, "n_files": n} for uid, n in self.series.items()],
                "skipped": list(self.skipped), "warnings": list(self.warnings)}


def _read_for_copy(path: str) -> tuple[Optional[Dataset], Optional[str]]:
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        return None, "not a DICOM file"
    except Exception as exc:  # corrupt files raise many types, and their messages may quote values
        return None, f"unreadable DICOM ({exc.__class__.__name__})"
    meta = getattr(ds, "file_meta", None)
    if meta is not None and _text(meta, "MediaStorageSOPClassUID") == DICOMDIR_SOP_CLASS:
        return None, "DICOMDIR index (not copied: it repeats patient attributes)"
    if not all(_text(ds, k) or (meta is not None and _text(meta, "MediaStorage" + k)) for k in ("SOPClassUID",
                                                                                              "SOPInstanceUID")):
        return None, "incomplete DICOM header (no SOP class or instance UID)"
    return ds, None


@contextmanager
def output_folder(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of the new or empty folder ``dst`` that replaces it only on success."""
    target = Path(dst)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(f"{target}: output exists and is not an empty folder; choose a new --out")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise InputError(f"{target}: cannot write here ({exc.strerror})") from exc
    try:
        yield tmp
        if target.exists():
            target.rmdir()
        os.rename(tmp, target)
    except OSError as exc:
        raise InputError(f"{target}: writing failed ({exc.strerror or exc.__class__.__name__})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing left after a successful rename


def deidentify_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    ctx: Optional[DeidentifyContext] = None,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> DeidentifyReport:
    """De-identify every DICOM file under ``src`` into the new folder ``dst`` (all or nothing).

    Files are named ``IM00001.dcm``... (input names may carry identifiers);
    pixel data is copied in its transfer syntax. Non-DICOM files and DICOMDIR
    indexes are skipped.

    Parameters
    ----------
    src, dst : path-like
        Input folder (searched recursively) or file; new or empty output folder.
    ctx : DeidentifyContext, optional
        Shared mapping; a fresh random one by default.

    Returns
    -------
    DeidentifyReport

    Raises
    ------
    InputError
        Missing ``src``, non-empty ``dst``, no DICOM file, or a burned-in
        annotation without ``ctx.allow_burned_in``.
    """
    progress = progress or no_progress
    ctx = ctx or DeidentifyContext()
    root = Path(src)
    if not root.exists():
        raise InputError(f"{root}: no such file or folder")
    files = [str(root)] if root.is_file() else sorted(
        os.path.join(d, n) for d, _dirs, names in os.walk(root) for n in names)
    report, target = DeidentifyReport(), Path(dst)
    with output_folder(target) as tmp:
        for i, path in enumerate(files):
            check_cancelled(cancelled)
            progress(i / max(len(files), 1), f"De-identifying {i + 1}/{len(files)}")
            rel = os.path.relpath(path, root) if root.is_dir() else root.name
            ds, reason = _read_for_copy(path)
            if ds is None:
                report.skipped.append({"path": rel, "reason": reason or "unknown"})
                continue
            name = f"IM{len(report.files) + 1:05d}.dcm"
            try:
                deidentify_dataset(ds, ctx)
                pydicom.dcmwrite(tmp / name, ds, enforce_file_format=True)
            except InputError as exc:
                raise InputError(f"{rel}: {exc}") from None
            except Exception as exc:  # values pydicom cannot decode or re-encode; messages may quote them
                (tmp / name).unlink(missing_ok=True)
                report.skipped.append({"path": rel, "reason": f"cannot be de-identified ({exc.__class__.__name__})"})
                continue
            report.files.append(target / name)
            uid = _text(ds, "SeriesInstanceUID")
            report.series[uid] = report.series.get(uid, 0) + 1
        if not report.files:
            raise InputError(f"{root}: no DICOM file to de-identify")
    report.warnings = list(ctx.warnings)
    log.info("de-identified %d file(s) in %d series, skipped %d", len(report.files), len(report.series),
             len(report.skipped))
    progress(1.0, f"De-identified {len(report.files)} files")
    return report
