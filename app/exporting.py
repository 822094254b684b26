"""Export one volume or label of a case (NRRD, NIfTI, DICOM CT, DICOM SEG); no Qt.

The one export path for the CLI (`twinplan export`) and the GUI export dialog.
DICOM output is de-identified (PS3.15 basic profile) unless the caller says
otherwise; NRRD/NIfTI headers hold geometry only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from app.case import Case
from imaging.errors import InputError
from imaging.export import (
    FILE_SUFFIXES, ExportResult, export_dicom_seg, export_dicom_series, export_image_file, file_format_of,
)
from imaging.progress import CancelledFn, ProgressFn

FORMATS = ("nrrd", "nifti", "dicom", "seg")
#: Formats each item kind can be written as.
FORMATS_BY_KIND = {"volume": ("nrrd", "nifti", "dicom"), "label": ("nrrd", "nifti", "seg")}


@dataclass
class ItemExport:
    """An :class:`ExportResult` plus which item went where."""

    result: ExportResult
    item: str
    out: Path
    study_from_source: bool

    def __getattr__(self, name):  # files, deidentified, segments, warnings...
        return getattr(self.result, name)

    def to_json(self) -> dict:
        what = f"{len(self.result.files)} file(s)" if self.result.format in ("dicom", "seg") else self.result.format
        return dict(self.result.to_json(), item=self.item, out=str(self.out),
                    study_from_source=self.study_from_source, what=what)


def source_series(case: Case, volume_name: str, option: str = "auto"):
    """(scan, series) of the original DICOM series of a volume, or (None, None).

    ``auto`` uses the folder recorded at import when it still holds the
    series; a path is scanned for that series, else its largest one;
    ``none`` uses no source.
    """
    from imaging.dicom import scan_dicom_folder

    if option == "none":
        return None, None
    prov = case.provenance.get(f"volume/{volume_name}")
    imported = prov is not None and prov.operation == "import_dicom"
    uid = prov.params.get("series_uid") if imported else None
    if option == "auto":
        path = prov.params.get("path") if imported else None
        if not path or not Path(path).exists():
            return None, None
    else:
        path = option
        if not Path(path).exists():
            raise InputError(f"--source {path}: no such file or folder")
    scan = scan_dicom_folder(path)
    if uid and any(s.series_uid == uid for s in scan.series):
        return scan, scan.find(uid)
    if option == "auto" or not scan.series:
        return None, None
    return scan, scan.find()


def label_volume(case: Case, label: str) -> Optional[str]:
    """The case volume a label lies on: its provenance input first, else any volume on the same grid."""
    lab = case.labels[label]
    prov = case.provenance.get(f"label/{label}")
    names = [i["id"].split("/", 1)[1] for i in (prov.inputs if prov else []) if i.get("id", "").startswith("volume/")]
    for name in names + [n for n in case.volumes if n not in names]:
        vol = case.volumes.get(name)
        if vol is not None and vol.array.shape == lab.array.shape and vol.geometry.same_grid(lab.geometry, 1e-3):
            return name
    return None


def _known(kind: str, names) -> str:
    return f"({kind}: {', '.join(names) or 'none'})"


def export_item(
    case: Case,
    kind: str,
    name: str,
    fmt: str,
    out: str | Path,
    *,
    deidentify: Optional[bool] = None,
    context=None,
    source: str = "auto",
    progress: Optional[ProgressFn] = None,
    cancelled: Optional[CancelledFn] = None,
) -> ItemExport:
    """Write the volume or label ``name`` of ``case`` in format ``fmt``.

    Parameters
    ----------
    kind : {"volume", "label"}
    fmt : {"nrrd", "nifti", "dicom", "seg"}
        ``dicom`` writes a volume as a CT series, ``seg`` a label as DICOM SEG.
    out : path
        ``FILE.nrrd`` / ``FILE.nii.gz``, or a new folder for dicom and seg.
    deidentify : bool, optional
        Default: True for dicom and seg.
    context : DeidentifyContext, optional
        Keyed mapping to use when de-identifying (a random one by default).
    source : str
        DICOM folder of the original series ("auto": the imported folder if still there; "none").

    Raises
    ------
    InputError
        Unknown item, format not valid for the item, bad file name, unwritable destination.
    """
    from imaging.deidentify import DeidentifyContext

    out = Path(out)
    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if kind == "volume":
        if fmt == "seg":
            raise InputError("--format seg exports a label: use --label NAME")
        if name not in case.volumes:
            raise InputError(f"--volume {name}: no such volume in the case {_known('volumes', case.volumes)}")
        item = case.volumes[name]
    elif kind == "label":
        if fmt == "dicom":
            raise InputError("--format dicom exports a volume as CT images: use --format seg for a label")
        if name not in case.labels:
            raise InputError(f"--label {name}: no such label in the case {_known('labels', case.labels)}")
        item = case.labels[name]
    else:
        raise InputError(f"cannot export a {kind}: only volumes and labels")
    if deidentify is None:
        deidentify = fmt in ("dicom", "seg")
    ctx = (context or DeidentifyContext()) if deidentify and fmt in ("dicom", "seg") else None
    scan = series = None  # the scan keeps an extracted zip source alive until the export is written
    if fmt in ("nrrd", "nifti"):
        if file_format_of(out) != fmt:
            raise InputError(f"--out {out}: a {fmt} file name ends with {' or '.join(FILE_SUFFIXES[fmt])}")
        result = export_image_file(item, out)
        result.deidentified = deidentify  # these headers hold geometry only: nothing to remove
    elif fmt == "dicom":
        scan, series = source_series(case, name, source)
        result = export_dicom_series(item, out, source=series, deidentify=ctx, progress=progress, cancelled=cancelled)
    else:
        vol_name = label_volume(case, name)
        if vol_name is None:
            raise InputError(f"--label {name}: no volume of the case lies on the label's grid")
        scan, series = source_series(case, vol_name, source)
        result = export_dicom_seg(item, out, volume=case.volumes[vol_name], source=series, deidentify=ctx,
                                  progress=progress, cancelled=cancelled)
    del scan
    return ItemExport(result, f"{kind}/{name}", out, series is not None)
