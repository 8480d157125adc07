"""The study's vocabulary: segment tags, terminology codes, lesion types and the segments of a reading.

Every front (the Slicer module, the browser reading station, the CLI) and the MRML glue name tags and
segments from here. Tags are ``QSMReproducibility.<Key>``: the reading's identity (:data:`READING_TAG_KEYS`,
set on every segment and as node attributes) and what a segment is (``Role``, ``LesionType``, ``Side``).
Terminology entries follow ``Resources/QSMReproducibility.term.json``. This module needs nothing beyond
numpy and the ``.seg.nrrd`` format module, so the MRML glue imports it before the library's other
requirements are installed.
"""

from __future__ import annotations

from typing import Mapping

from .errors import InputError
from .segio import SegmentSpec, check_tag

__all__ = [
    "TAG_PREFIX", "READING_TAG_KEYS", "SEGMENT_TAG_KEYS", "TERMINOLOGY_CONTEXT", "ANATOMIC_CONTEXT",
    "LESION_TYPES", "SIDES", "READING_SEGMENT_IDS", "DEFAULT_LABELS",
    "reading_tags", "terminology_entry", "lesion_segment", "csf_segment", "reading_segment_id",
]

TAG_PREFIX = "QSMReproducibility."
READING_TAG_KEYS = tuple(TAG_PREFIX + key for key in ("Observer", "Reading", "CaseID", "SessionUID", "Status"))
"""Tags that identify one reading; set as node attributes and as tags of every segment."""

SEGMENT_TAG_KEYS = READING_TAG_KEYS + tuple(TAG_PREFIX + key for key in ("Role", "LesionType", "Side"))
"""Every tag the project puts on a segment."""

#: Context names: the first is the ``SegmentationCategoryTypeContextName`` of
#: ``Resources/QSMReproducibility.term.json``; the second is the anatomic context Slicer ships.
TERMINOLOGY_CONTEXT = "Segmentation category and type - QSMReproducibility"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"

LESION_TYPES = ("hematoma", "calcification")
SIDES = ("right", "left")

# SNOMED CT codes (coding scheme "SCT") and meanings, as in Slicer's DICOM master lists and the term.json.
_SNOMED_CT = {
    "morphology": ("49755003", "Morphologically Altered Structure"),  # categories
    "anatomy": ("123037004", "Anatomical Structure"),
    "hematoma": ("35566002", "Hematoma"),  # types
    "calcification": ("18115005", "Calcification"),
    "csf": ("65216001", "Cerebrospinal Fluid"),
    "vertebral artery": ("85234005", "Vertebral artery"),  # regions
    "lateral ventricle": ("66720007", "Lateral ventricle"),
    "right": ("24028007", "Right"),  # region modifiers
    "left": ("7771000", "Left"),
    "both": ("51440002", "Right and left"),
}


def _sct(name: str) -> tuple[str, str, str]:
    return ("SCT", *_SNOMED_CT[name])


# recommendedDisplayRGBValue of the term.json, 0-255.
_COLORS_RGB255 = {
    "hematoma": (188, 65, 28),
    "calcification": (241, 214, 145),
    "csf": (85, 188, 255),
}

#: The segments of a reading, as this project names them.
READING_SEGMENT_IDS = ("lesion_right", "lesion_left", "csf")

#: Label values of a reading saved as a label map, unless a mapping says otherwise.
DEFAULT_LABELS = {"lesion_right": 1, "lesion_left": 2, "csf": 3}

# Segment names accepted for each segment, compared case-insensitively with '_', '-' and spaces alike.
_SEGMENT_ALIASES = {
    "lesion_right": ("lesion right", "right lesion", "lesion r", "r lesion", "right vertebral artery lesion",
                     "hematoma right", "right hematoma", "calcification right", "right calcification",
                     "hematoma right vertebral artery", "calcification right vertebral artery"),
    "lesion_left": ("lesion left", "left lesion", "lesion l", "l lesion", "left vertebral artery lesion",
                    "hematoma left", "left hematoma", "calcification left", "left calcification",
                    "hematoma left vertebral artery", "calcification left vertebral artery"),
    "csf": ("csf", "csf reference", "reference csf", "csf roi", "cerebrospinal fluid"),
}


def _normalised_name(text: str) -> str:
    return " ".join("".join(c if c.isalnum() else " " for c in str(text).lower()).split())


def reading_segment_id(name: str) -> str | None:
    """``lesion_right``, ``lesion_left`` or ``csf`` for a segment name or alias (e.g. "CSF", "Lesion right");
    None for any other name."""
    key = _normalised_name(name)
    for segment_id, aliases in _SEGMENT_ALIASES.items():
        if key == _normalised_name(segment_id) or key in aliases:
            return segment_id
    return None


def reading_tags(*, observer: str, reading: int, case_id: str, session_uid: str, status: str) -> dict[str, str]:
    """The tags every segment of one reading carries.

    Parameters
    ----------
    observer, case_id, session_uid, status : str
        Values of ``QSMReproducibility.Observer``, ``.CaseID``, ``.SessionUID`` and ``.Status``.
    reading : int
        Reading number (1, 2, ...), stored as ``QSMReproducibility.Reading``.

    Returns
    -------
    dict[str, str]
    """
    if isinstance(reading, bool) or int(reading) != reading or int(reading) < 1:
        raise InputError(f"reading number must be a positive integer, got {reading!r}")
    tags = {
        TAG_PREFIX + "Observer": str(observer),
        TAG_PREFIX + "Reading": str(int(reading)),
        TAG_PREFIX + "CaseID": str(case_id),
        TAG_PREFIX + "SessionUID": str(session_uid),
        TAG_PREFIX + "Status": str(status),
    }
    for key, value in tags.items():
        if not value:
            raise InputError(f"reading tag {key} must not be empty")
        check_tag(key, value, "reading tags")
    return tags


def terminology_entry(category, type_, region=None, region_modifier=None, type_modifier=None) -> str:
    """Serialise a terminology entry as Slicer's ``vtkSlicerTerminologiesModuleLogic`` does.

    Each code is a ``(coding scheme, code value, code meaning)`` triple or ``None``.
    """

    def code(triple) -> str:
        scheme, value, meaning = triple if triple else ("", "", "")
        return f"{scheme}^{value}^{meaning}"

    return "~".join(
        [
            TERMINOLOGY_CONTEXT,
            code(category),
            code(type_),
            code(type_modifier),
            ANATOMIC_CONTEXT,
            code(region),
            code(region_modifier),
        ]
    )


def _rgb(name: str) -> tuple[float, float, float]:
    return tuple(round(c / 255.0, 6) for c in _COLORS_RGB255[name])


def lesion_segment(side: str, lesion_type: str, tags: Mapping[str, str]) -> SegmentSpec:
    """Segment spec of a vertebral-artery lesion.

    Parameters
    ----------
    side : {"right", "left"}
        Side of the vertebral artery; the segment ID is ``lesion_<side>``.
    lesion_type : {"hematoma", "calcification"}
    tags : Mapping[str, str]
        Reading tags (see :func:`reading_tags`); ``Role``, ``LesionType`` and ``Side`` are added.

    Returns
    -------
    SegmentSpec
        Terminology: morphologically altered structure / hematoma (SCT 35566002) or calcification
        (SCT 18115005), anatomic region vertebral artery (SCT 85234005) with laterality.
    """
    if side not in SIDES:
        raise InputError(f"lesion side must be one of {SIDES}, got {side!r}")
    if lesion_type not in LESION_TYPES:
        raise InputError(f"lesion type must be one of {LESION_TYPES}, got {lesion_type!r}")
    all_tags = dict(tags)
    all_tags.update(
        {TAG_PREFIX + "Role": "lesion", TAG_PREFIX + "LesionType": lesion_type, TAG_PREFIX + "Side": side}
    )
    return SegmentSpec(
        segment_id=f"lesion_{side}",
        name=f"{lesion_type.capitalize()} {side} vertebral artery",
        color=_rgb(lesion_type),
        tags=all_tags,
        terminology=terminology_entry(
            _sct("morphology"), _sct(lesion_type), _sct("vertebral artery"), _sct(side)
        ),
    )


def csf_segment(tags: Mapping[str, str]) -> SegmentSpec:
    """Segment spec of the CSF reference region (posterior horns of the lateral ventricles).

    The terminology is cerebrospinal fluid (SCT 65216001) in the lateral ventricles
    (SCT 66720007), right and left.
    """
    all_tags = dict(tags)
    all_tags[TAG_PREFIX + "Role"] = "csf"
    return SegmentSpec(
        segment_id="csf",
        name="CSF reference",
        color=_rgb("csf"),
        tags=all_tags,
        terminology=terminology_entry(
            _sct("anatomy"), _sct("csf"), _sct("lateral ventricle"), _sct("both")
        ),
    )
