"""Export volumes and label maps: NRRD, NIfTI, DICOM CT series, DICOM SEG.

NRRD / NIfTI go through SimpleITK, which keeps our LPS geometry (ITK turns
it into NIfTI's RAS sform/qform and back). A DICOM CT series is one file per
slice placed by ImagePositionPatient/ImageOrientationPatient, with new
series and instance UIDs; study-level attributes come from a source series
when given (so the export joins the original study), else they are
synthetic. A label map becomes a DICOM SEG (highdicom) that references the
CT it segments: the source series files when the label lies on their grid,
else a CT series exported alongside. With a ``DeidentifyContext`` every
written dataset goes through :func:`imaging.deidentify.deidentify_dataset`
with the same context, so references between the files stay valid.
"""
from __future__ import annotations

import copy
import datetime as _dt
import importlib.metadata
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid
from pydicom.valuerep import format_number_as_ds

from imaging.deidentify import DeidentifyContext, deidentify_dataset, output_folder
from imaging.dicom_series import SeriesInfo
from imaging.errors import InputError
from imaging.progress import CancelledFn, ProgressFn, check_cancelled, no_progress
from imaging.volume import LabelMap, Volume

if TYPE_CHECKING:  # highdicom takes half a second to import: only the SEG export loads it
    from highdicom.seg import Segmentation

log = logging.getLogger(__name__)

#: File-name endings of the single-file formats.
FILE_SUFFIXES = {"nrrd": (".nrrd",), "nifti": (".nii.gz", ".nii")}
SOFTWARE = "TwinPlan"
#: Study-level attributes taken over from a source series (patient, study, frame of reference).
STUDY_KEYWORDS = (
    "SpecificCharacterSet PatientName PatientID IssuerOfPatientID PatientBirthDate PatientSex PatientAge "
    "PatientWeight PatientSize PatientIdentityRemoved DeidentificationMethod DeidentificationMethodCodeSequence "
    "StudyInstanceUID StudyDate StudyTime ReferringPhysicianName StudyID AccessionNumber StudyDescription "
    "FrameOfReferenceUID PositionReferenceIndicator PatientPosition BodyPartExamined"
).split()


def _software_version() -> str:
    try:
        return importlib.metadata.version("twinplan")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class ExportResult:
    """Files written by one export and what they contain."""

    format: str
    files: list[Path] = field(default_factory=list)
    deidentified: bool = False
    series_uid: str = ""  # the written series (CT or SEG)
    study_uid: str = ""
    referenced_series_uid: str = ""  # SEG: the CT series it references
    segments: list[dict] = field(default_factory=list)  # SEG: number, label, value, voxels
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        data = {"format": self.format, "files": [str(f) for f in self.files], "n_files": len(self.files),
                "deidentified": self.deidentified, "warnings": list(self.warnings)}
        for key in ("series_uid", "study_uid", "referenced_series_uid"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        if self.segments:
            data["segments"] = list(self.segments)
        return data


# -- NRRD / NIfTI ------------------------------------------------------------
def file_format_of(path: str | os.PathLike) -> Optional[str]:
    """"nrrd" or "nifti" from a file name, else None."""
    name = Path(path).name.lower()
    return next((fmt for fmt, ends in FILE_SUFFIXES.items() if name.endswith(ends)), None)


def export_image_file(item: Volume | LabelMap, path: str | os.PathLike) -> ExportResult:
    """Write a volume or label map as NRRD (``.nrrd``) or NIfTI (``.nii.gz``/``.nii``).

    The file is written under a temporary name and renamed into place.
    Geometry (spacing, origin, direction; LPS mm) and voxel type are kept;
    no patient attribute exists in either format's header.

    Raises
    ------
    InputError
        Unknown file ending, or the file cannot be written.
    """
    out = Path(path)
    fmt = file_format_of(out)
    if fmt is None:
        raise InputError(f"{out}: use a .nrrd, .nii.gz or .nii file name")
    tmp = out.with_name(f".{secrets.token_hex(4)}.{out.name}")  # same ending: SimpleITK picks the writer by it
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(item.to_sitk(), str(tmp), useCompression=True)
        os.replace(tmp, out)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{out}: writing failed ({str(exc).strip().splitlines()[-1][:120]})") from exc
    return ExportResult(fmt, [out])


# -- DICOM CT ----------------------------------------------------------------
def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def encode_ct_values(array: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """Stored 16-bit values, rescale slope and intercept for ``array``; last item True if lossless."""
    lo, hi = float(array.min()), float(array.max())
    integral = array.dtype.kind in "iub" or bool(np.all(np.mod(array, 1) == 0))
    if integral and -32768 <= lo and hi <= 32767:
        return array.astype(np.int16, copy=False), 1.0, 0.0, True
    if integral and hi - lo <= 65535:
        return (array - lo).astype(np.uint16), 1.0, lo, True
    slope = (hi - lo) / 65535.0 or 1.0
    return np.rint((array - lo) / slope).astype(np.uint16), slope, lo, False


def _study_template(source: Optional[SeriesInfo]) -> Optional[Dataset]:
    if source is None or not source.files:
        return None
    try:
        return pydicom.dcmread(source.files[0], stop_before_pixels=True)
    except Exception as exc:  # the message may quote header values
        raise InputError(f"{source.files[0]}: unreadable source header ({exc.__class__.__name__})") from None


def _base_dataset(template: Optional[Dataset], series_uid: str, description: str, number: int) -> Dataset:
    ds = Dataset()
    now = _dt.datetime.now()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = ds.PatientID = ds.PatientBirthDate = ds.PatientSex = ""
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid()
    ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ReferringPhysicianName = ds.StudyID = ds.AccessionNumber = ds.PositionReferenceIndicator = ""
    ds.PatientPosition = ""
    for keyword in STUDY_KEYWORDS if template is not None else ():
        if keyword in template:
            ds[keyword] = copy.deepcopy(template[keyword])
    ds.SOPClassUID, ds.Modality = CTImageStorage, "CT"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, number, description
    ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.Manufacturer = ds.ManufacturerModelName = SOFTWARE
    ds.SoftwareVersions = _software_version()
    ds.KVP = ds.AcquisitionNumber = ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.RescaleType = "HU"
    return ds


def volume_to_ct_datasets(
    volume: Volume,
    *,
    source: Optional[SeriesInfo] = None,
    series_description: str = "",
    series_number: int = 901,
    cancelled: Optional[CancelledFn] = None,
) -> tuple[list[Dataset], list[str]]:
    """Build one CT Image dataset per slice of ``volume`` (in memory, new UIDs).

    Parameters
    ----------
    volume : Volume
        CT in HU; slice k lies at ``origin + k * spacing_z * direction[:, 2]``.
    source : SeriesInfo, optional
        Series whose patient, study and frame-of-reference attributes are
        kept; synthetic ones otherwise.
    series_description : str
        SeriesDescription of the new series.

    Returns
    -------
    (list of Dataset, list of str)
        Datasets in slice order, and warnings (lossy rescaling, sheared grid).

    Raises
    ------
    InputError
        For a non-CT modality or an empty volume.
    """
    if volume.modality not in ("", "CT", "OT"):
        raise InputError(f"DICOM export writes CT images; this volume is {volume.modality} (use NRRD or NIfTI)")
    if volume.array.ndim != 3 or volume.array.size == 0 or not np.isfinite(volume.array).all():
        raise InputError("DICOM export needs a non-empty 3D volume of finite values")
    warnings = []
    stored, slope, intercept, exact = encode_ct_values(volume.array)
    if not exact:
        warnings.append(f"voxel values rescaled to 16 bits (step {slope:.4g}): not bit-exact")
    g = volume.geometry
    d = g.direction
    if not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
        warnings.append("sheared grid: slices are written at their true positions; readers will resample")
    nz, ny, nx = volume.array.shape
    sample = volume.array[:: max(1, nz // 8), ::4, ::4]
    p1, p99 = np.percentile(sample, [1, 99]) if sample.size else (0.0, 1.0)
    base = _base_dataset(_study_template(source), generate_uid(), series_description, series_number)
    base.Rows, base.Columns = ny, nx
    base.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    base.RescaleSlope, base.RescaleIntercept = _ds(slope), _ds(intercept)
    base.WindowCenter, base.WindowWidth = _ds((p1 + p99) / 2), _ds(max(p99 - p1, 1.0))
    base.PixelSpacing = [_ds(g.spacing_xyz[1]), _ds(g.spacing_xyz[0])]  # row spacing (y), column spacing (x)
    base.SliceThickness = base.SpacingBetweenSlices = _ds(g.spacing_xyz[2])
    base.ImageOrientationPatient = [_ds(v) for v in np.concatenate([d[:, 0], d[:, 1]])]
    normal = np.cross(d[:, 0], d[:, 1])
    datasets = []
    for k in range(nz):
        if k % 32 == 0:
            check_cancelled(cancelled)
        ds = copy.deepcopy(base)
        position = np.asarray(g.origin_xyz) + k * g.spacing_xyz[2] * d[:, 2]
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(float(np.dot(position, normal)))
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        datasets.append(ds)
    return datasets, warnings


def _write_series(datasets: Sequence[Dataset], folder: Path, ctx: Optional[DeidentifyContext], description: str,
                  progress: ProgressFn, cancelled: Optional[CancelledFn]) -> list[str]:
    """De-identify (with ``ctx``) and write ``IM00001.dcm``... into ``folder``; return the file names."""
    names = []
    folder.mkdir(parents=True, exist_ok=True)
    for i, ds in enumerate(datasets):
        if i % 16 == 0:
            check_cancelled(cancelled)
            progress(0.2 + 0.7 * i / max(len(datasets), 1), f"Writing DICOM {i + 1}/{len(datasets)}")
        if ctx is not None:
            deidentify_dataset(ds, ctx)
            ds.SeriesDescription = description  # our own, non-identifying description
        names.append(f"IM{i + 1:05d}.dcm")
        pydicom.dcmwrite(folder / names[-1], ds, enforce_file_format=True)
    return names


def export_dicom_series(
    volume: Volume,
    out_dir: str | os.PathLike,
    *,
    source: Optional[SeriesInfo] = None,
    deidentify: Optional[DeidentifyContext] = None,
    series_description: str = "TwinPlan CT",
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> ExportResult:
    """Write ``volume`` as a DICOM CT series (one file per slice) into the new folder ``out_dir``.

    Parameters
    ----------
    volume : Volume
        CT in HU (LPS mm); int16 voxels are stored bit-exact (slope 1, intercept 0).
    out_dir : path-like
        New or empty folder; it appears only once every file is written.
    source : SeriesInfo, optional
        Series whose study-level attributes are kept (see :func:`volume_to_ct_datasets`).
    deidentify : DeidentifyContext, optional
        De-identify every file with this context.

    Returns
    -------
    ExportResult

    Raises
    ------
    InputError
        Non-CT volume, non-empty ``out_dir``, unwritable destination.
    """
    progress = progress or no_progress
    datasets, warnings = volume_to_ct_datasets(volume, source=source, series_description=series_description,
                                               cancelled=cancelled)
    target = Path(out_dir)
    with output_folder(target) as tmp:
        names = _write_series(datasets, tmp, deidentify, series_description, progress, cancelled)
    progress(1.0, f"Wrote {len(names)} DICOM files")
    return ExportResult("dicom", [target / n for n in names], deidentify is not None,
                        str(datasets[0].SeriesInstanceUID), str(datasets[0].StudyInstanceUID),
                        warnings=warnings + (list(deidentify.warnings) if deidentify else []))


# -- DICOM SEG ---------------------------------------------------------------
#: Segmented property (category, type) keywords of SNOMED CT codes, by label name.
SEGMENT_CODES = {
    "bone": ("Tissue", "Bone"), "teeth": ("AnatomicalStructure", "Tooth"), "skin": ("AnatomicalStructure", "Skin"),
    "soft_tissue": ("Tissue", "SoftTissue"), "vessels": ("AnatomicalStructure", "BloodVessel"),
    "muscle": ("Tissue", "Muscle"),
}


def _on_grid(source: SeriesInfo, labelmap: LabelMap) -> bool:
    nz, ny, nx = labelmap.array.shape
    return (
        (source.rows, source.columns, len(source.slices)) == (ny, nx, nz)
        and not source.is_irregular()
        and source.geometry().same_grid(labelmap.geometry, tol=1e-3)
    )


def labelmap_to_seg(
    labelmap: LabelMap, source_images: Sequence[Dataset], *, algorithm_type: str = "SEMIAUTOMATIC"
) -> tuple[Segmentation, list[dict]]:
    """Build a binary DICOM SEG of ``labelmap`` on ``source_images`` (one per slice, in slice order).

    Segments are numbered 1..n in order of label value; names come from the
    label table (values missing from it become ``label_<value>``), colours
    become the recommended display colours. Empty labels are left out.

    Returns
    -------
    (highdicom.seg.Segmentation, list of dict)
        The SEG and its segments (number, label, value, voxels).

    Raises
    ------
    InputError
        If the label map holds no labelled voxel.
    """
    import warnings

    import highdicom as hd
    from pydicom.sr.codedict import codes

    values, counts = np.unique(labelmap.array, return_counts=True)
    present = {int(v): int(c) for v, c in zip(values, counts) if v != 0}
    if not present:
        raise InputError("the label map is empty: no segment to export")
    pixels = np.zeros(labelmap.array.shape, dtype=np.uint8 if len(present) < 256 else np.uint16)
    descriptions, segments = [], []
    algorithm = hd.AlgorithmIdentificationSequence(SOFTWARE, codes.cid7162.HistogramAnalysis, _software_version())
    for number, value in enumerate(sorted(present), start=1):
        info = labelmap.labels.get(value)
        name = info.name if info is not None else f"label_{value}"
        category, kind = SEGMENT_CODES.get(name.lower(), ("Tissue", "Tissue"))
        color = hd.color.CIELabColor.from_rgb(*(255 * c for c in info.color)) if info is not None else None
        descriptions.append(hd.seg.SegmentDescription(
            number, name, getattr(codes.SCT, category), getattr(codes.SCT, kind), algorithm_type,
            algorithm_identification=None if algorithm_type == "MANUAL" else algorithm, display_color=color))
        pixels[labelmap.array == value] = number
        segments.append({"number": number, "label": name, "value": value, "voxels": present[value]})
    with warnings.catch_warnings():  # highdicom warns quoting attribute values (e.g. the patient's name)
        warnings.simplefilter("ignore")
        seg = hd.seg.Segmentation(
            source_images, pixels, hd.seg.SegmentationTypeValues.BINARY, descriptions, hd.UID(), 902, hd.UID(), 1,
            SOFTWARE, SOFTWARE, _software_version(), SOFTWARE, series_description="TwinPlan segmentation",
            content_label="TWINPLAN")
    return seg, segments


def export_dicom_seg(
    labelmap: LabelMap,
    out_dir: str | os.PathLike,
    *,
    volume: Optional[Volume] = None,
    source: Optional[SeriesInfo] = None,
    deidentify: Optional[DeidentifyContext] = None,
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> ExportResult:
    """Write ``labelmap`` as a DICOM SEG (``seg.dcm``) into the new folder ``out_dir``.

    The SEG references the CT it segments. If ``source`` (the scanned series
    the case was imported from) lies on the label's grid, its files are
    referenced: in place, or copied de-identified to ``out_dir/ct`` when
    ``deidentify`` is given. Otherwise ``volume`` (on the label's grid) is
    exported as a CT series to ``out_dir/ct`` and referenced.

    Parameters
    ----------
    labelmap : LabelMap
        Integer labels with their table (names, colours).
    out_dir : path-like
        New or empty folder.
    volume : Volume, optional
        The CT on the label's grid (needed unless ``source`` matches the grid).
    source : SeriesInfo, optional
        Original series: referenced when on the grid, else study attributes only.
    deidentify : DeidentifyContext, optional
        De-identify the SEG and every CT file written with this context.

    Returns
    -------
    ExportResult
        ``files`` lists the CT files written (if any), then ``seg.dcm``.

    Raises
    ------
    InputError
        Empty label map, no CT on the label's grid, non-empty ``out_dir``.
    """
    progress = progress or no_progress
    warnings: list[str] = []
    if source is not None and _on_grid(source, labelmap):
        try:  # pixels are only needed when the series is copied (de-identified)
            images = [pydicom.dcmread(f, stop_before_pixels=deidentify is None) for f in source.files]
        except Exception as exc:  # the message may quote header values
            raise InputError(f"source series: unreadable file ({exc.__class__.__name__})") from None
        write_ct = deidentify is not None
    elif volume is not None:
        if volume.array.shape != labelmap.array.shape or not volume.geometry.same_grid(labelmap.geometry, 1e-3):
            raise InputError("the label map is not on the volume's grid: cannot reference that CT")
        if source is not None:
            warnings.append("the label map is not on the source series grid: the SEG references a CT series "
                            "exported with it")
        images, more = volume_to_ct_datasets(volume, source=source, cancelled=cancelled)
        warnings += more
        write_ct = True
    else:
        raise InputError("a DICOM SEG references the CT it segments: give the volume (or its source series)")
    progress(0.1, "Building segmentation")
    seg, segments = labelmap_to_seg(labelmap, images)
    target, files = Path(out_dir), []
    with output_folder(target) as tmp:
        if write_ct:
            names = _write_series(images, tmp / "ct", deidentify, "TwinPlan CT", progress, cancelled)
            files = [target / "ct" / n for n in names]
        if deidentify is not None:
            deidentify_dataset(seg, deidentify)
            seg.SeriesDescription = "TwinPlan segmentation"
            seg.DeviceSerialNumber = SOFTWARE  # type 1 for SEG; the "device" is this software
        pydicom.dcmwrite(tmp / "seg.dcm", seg, enforce_file_format=True)
    files.append(target / "seg.dcm")
    referenced = str(images[0].SeriesInstanceUID)  # the CT written (de-identified in place) or the source
    progress(1.0, f"Wrote SEG with {len(segments)} segment(s)")
    return ExportResult("seg", files, deidentify is not None, str(seg.SeriesInstanceUID), str(seg.StudyInstanceUID),
                        referenced, segments, warnings + (list(deidentify.warnings) if deidentify else []))
