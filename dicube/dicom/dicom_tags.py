"""CommonTags: named DICOM tags used throughout dicube."""
from __future__ import annotations

from typing import Union

from pydicom.datadict import tag_for_keyword
from pydicom.tag import BaseTag, Tag

__all__ = ["CommonTags", "TagLike", "to_tag", "tag_key"]

TagLike = Union[int, str, tuple, BaseTag]


class CommonTags:
    """Tags for identity, geometry, pixel description, rescale/windowing, acquisition
    and timing. Each attribute is a :class:`pydicom.tag.BaseTag` (an ``int``)."""

    # file meta
    TransferSyntaxUID = BaseTag(0x00020010)
    MediaStorageSOPClassUID = BaseTag(0x00020002)
    MediaStorageSOPInstanceUID = BaseTag(0x00020003)
    # identity
    SpecificCharacterSet = BaseTag(0x00080005)
    ImageType = BaseTag(0x00080008)
    SOPClassUID = BaseTag(0x00080016)
    SOPInstanceUID = BaseTag(0x00080018)
    Modality = BaseTag(0x00080060)
    Manufacturer = BaseTag(0x00080070)
    StudyDescription = BaseTag(0x00081030)
    SeriesDescription = BaseTag(0x0008103E)
    PatientName = BaseTag(0x00100010)
    PatientID = BaseTag(0x00100020)
    PatientBirthDate = BaseTag(0x00100030)
    PatientSex = BaseTag(0x00100040)
    PatientAge = BaseTag(0x00101010)
    StudyInstanceUID = BaseTag(0x0020000D)
    SeriesInstanceUID = BaseTag(0x0020000E)
    StudyID = BaseTag(0x00200010)
    SeriesNumber = BaseTag(0x00200011)
    AcquisitionNumber = BaseTag(0x00200012)
    InstanceNumber = BaseTag(0x00200013)
    FrameOfReferenceUID = BaseTag(0x00200052)
    # geometry
    ImagePositionPatient = BaseTag(0x00200032)
    ImageOrientationPatient = BaseTag(0x00200037)
    SliceLocation = BaseTag(0x00201041)
    SliceThickness = BaseTag(0x00180050)
    SpacingBetweenSlices = BaseTag(0x00180088)
    PixelSpacing = BaseTag(0x00280030)
    GantryDetectorTilt = BaseTag(0x00181120)
    PatientPosition = BaseTag(0x00185100)
    NumberOfFrames = BaseTag(0x00280008)
    SharedFunctionalGroupsSequence = BaseTag(0x52009229)
    PerFrameFunctionalGroupsSequence = BaseTag(0x52009230)
    PlanePositionSequence = BaseTag(0x00209113)
    PlaneOrientationSequence = BaseTag(0x00209116)
    PixelMeasuresSequence = BaseTag(0x00289110)
    # pixel description
    SamplesPerPixel = BaseTag(0x00280002)
    PhotometricInterpretation = BaseTag(0x00280004)
    PlanarConfiguration = BaseTag(0x00280006)
    Rows = BaseTag(0x00280010)
    Columns = BaseTag(0x00280011)
    BitsAllocated = BaseTag(0x00280100)
    BitsStored = BaseTag(0x00280101)
    HighBit = BaseTag(0x00280102)
    PixelRepresentation = BaseTag(0x00280103)
    SmallestImagePixelValue = BaseTag(0x00280106)
    LargestImagePixelValue = BaseTag(0x00280107)
    PixelData = BaseTag(0x7FE00010)
    # rescale and windowing
    RescaleIntercept = BaseTag(0x00281052)
    RescaleSlope = BaseTag(0x00281053)
    RescaleType = BaseTag(0x00281054)
    WindowCenter = BaseTag(0x00281050)
    WindowWidth = BaseTag(0x00281051)
    # acquisition
    KVP = BaseTag(0x00180060)
    XRayTubeCurrent = BaseTag(0x00181151)
    ExposureTime = BaseTag(0x00181150)
    ConvolutionKernel = BaseTag(0x00181210)
    EchoTime = BaseTag(0x00180081)
    EchoNumbers = BaseTag(0x00180086)
    RepetitionTime = BaseTag(0x00180080)
    DiffusionBValue = BaseTag(0x00189087)
    TemporalPositionIdentifier = BaseTag(0x00200100)
    TriggerTime = BaseTag(0x00181060)
    # timing
    StudyDate = BaseTag(0x00080020)
    SeriesDate = BaseTag(0x00080021)
    AcquisitionDate = BaseTag(0x00080022)
    ContentDate = BaseTag(0x00080023)
    StudyTime = BaseTag(0x00080030)
    SeriesTime = BaseTag(0x00080031)
    AcquisitionTime = BaseTag(0x00080032)
    ContentTime = BaseTag(0x00080033)
    AcquisitionDateTime = BaseTag(0x0008002A)

    @classmethod
    def names(cls) -> list[str]:
        """Names of all common tags."""
        return [k for k, v in vars(cls).items() if isinstance(v, BaseTag)]


def to_tag(tag: TagLike) -> BaseTag:
    """Accept a CommonTags member, a keyword, an int, a (group, element) tuple or an
    ``"GGGGEEEE"`` hex string."""
    if isinstance(tag, str):
        t = tag_for_keyword(tag)
        if t is not None:
            return BaseTag(t)
        s = tag.strip("() ").replace(",", "")
        try:
            return BaseTag(int(s, 16))
        except ValueError:
            raise KeyError(f"unknown tag {tag!r}") from None
    return Tag(tag)


def tag_key(tag: TagLike) -> str:
    """The DICOM JSON key ("GGGGEEEE") of a tag."""
    return f"{int(to_tag(tag)):08X}"
