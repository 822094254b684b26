"""Fast reads of DICOM header values without pydicom's value conversion.

Scanning a folder reads ~20 values from every file; converting them through
pydicom's DS/IS types cost more than reading the files. These helpers parse
the raw bytes of the few tags we need (text VRs and US) directly.
"""
from __future__ import annotations

from pydicom.dataset import Dataset

TAGS = {
    "StudyInstanceUID": 0x0020000D, "SeriesInstanceUID": 0x0020000E, "SeriesNumber": 0x00200011,
    "InstanceNumber": 0x00200013, "ImagePositionPatient": 0x00200032,
    "ImageOrientationPatient": 0x00200037, "FrameOfReferenceUID": 0x00200052,
    "ImageType": 0x00080008, "Modality": 0x00080060, "Manufacturer": 0x00080070,
    "ManufacturerModelName": 0x00081090, "AcquisitionNumber": 0x00200012, "EchoNumbers": 0x00180086,
    "TemporalPositionIdentifier": 0x00200100, "SeriesDate": 0x00080021, "SeriesTime": 0x00080031,
    "GantryDetectorTilt": 0x00181120, "SamplesPerPixel": 0x00280002,
    "PhotometricInterpretation": 0x00280004, "NumberOfFrames": 0x00280008, "Rows": 0x00280010,
    "Columns": 0x00280011, "PixelSpacing": 0x00280030, "BitsAllocated": 0x00280100,
    "BitsStored": 0x00280101, "HighBit": 0x00280102, "PixelRepresentation": 0x00280103,
    "RescaleIntercept": 0x00281052, "RescaleSlope": 0x00281053,
}


class HeaderValues:
    """Typed access to raw header values of a dataset read with pydicom."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.byteorder = "big" if ds.is_little_endian is False else "little"

    def _value(self, name: str):
        elem = self.ds.get_item(TAGS[name])
        return None if elem is None else elem.value

    def text(self, name: str) -> str:
        """Value of a text VR (CS, DS, IS, UI, DA, TM...) as a stripped string."""
        v = self._value(name)
        if v is None:
            return ""
        if isinstance(v, (bytes, bytearray)):
            return bytes(v).decode("latin-1").strip(" \x00")
        if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
            return "\\".join(str(x) for x in v)
        return str(v).strip()

    def numbers(self, name: str) -> list[float]:
        """Multi-valued DS/IS as floats ([] when absent). Raises ValueError if malformed."""
        t = self.text(name)
        return [float(x) for x in t.split("\\")] if t else []

    def number(self, name: str, default: float) -> float:
        nums = self.numbers(name)
        return nums[0] if nums else default

    def us(self, name: str, default: int) -> int:
        """Unsigned short (US) value."""
        v = self._value(name)
        if v is None or v == b"":
            return default
        if isinstance(v, (bytes, bytearray)):
            if len(v) < 2:
                raise ValueError(f"{name}: short US value")
            return int.from_bytes(bytes(v[:2]), self.byteorder)
        return int(v)
