"""A reading's segmentation as another tool saves it: a label map, or a ``.seg.nrrd`` with named segments.

Readings drawn in ITK-SNAP, plain 3D Slicer or any label-map editor come in here: label values follow a
mapping (:data:`~QSMReproducibilityLib.terminology.DEFAULT_LABELS` unless one is given), segment names are
matched to ``lesion_right``, ``lesion_left`` and ``csf``
(:func:`~QSMReproducibilityLib.terminology.reading_segment_id`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import InputError
from ..segio import SegmentationData, SegmentSpec, affine_from_nrrd, read_seg_nrrd
from ..terminology import DEFAULT_LABELS, reading_segment_id

__all__ = ["read_reading", "read_label_map", "parse_label_mapping", "label_convention"]

_LABEL_MAP_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr")


def label_convention(labels: Mapping[str, int] | None = None) -> str:
    """``lesion_right=1,lesion_left=2,csf=3``: a mapping as the ``--labels`` option writes it."""
    return ",".join(f"{name}={value}" for name, value in (labels or DEFAULT_LABELS).items())


def parse_label_mapping(labels: str | Mapping[str, int] | None) -> dict[str, int]:
    """The label value of each reading segment, from ``"lesion_right=1,lesion_left=2,csf=3"`` or a dict.

    Names may be aliases ("CSF", "lesion right"); values are positive integers, one per segment. None
    gives :data:`DEFAULT_LABELS`.

    Raises
    ------
    InputError
        A malformed entry, an unknown name, a repeated name or value, or no csf or lesion label.
    """
    if labels is None:
        return dict(DEFAULT_LABELS)
    example = label_convention()
    if isinstance(labels, str):
        pairs = []
        for item in (part.strip() for part in labels.split(",")):
            name, equals, value = item.partition("=")
            if not item or not equals:
                raise InputError(f"--labels {labels!r}: {item!r} is not NAME=VALUE (write e.g. {example})")
            pairs.append((name.strip(), value.strip()))
    else:
        pairs = list(dict(labels).items())
    mapping: dict[str, int] = {}
    for name, value in pairs:
        segment_id = reading_segment_id(name)
        if segment_id is None:
            raise InputError(f"--labels: {name!r} is not a reading segment; name lesion_right, lesion_left and csf "
                             f"(e.g. {example})")
        try:
            number = int(str(value))
        except ValueError:
            number = 0
        if number < 1:
            raise InputError(f"--labels: the label of {segment_id} must be a positive whole number, got {value!r}")
        if segment_id in mapping:
            raise InputError(f"--labels: {segment_id} is given twice")
        if number in mapping.values():
            raise InputError(f"--labels: label {number} is given to two segments")
        mapping[segment_id] = number
    if "csf" not in mapping or not any(k.startswith("lesion_") for k in mapping):
        raise InputError(f"--labels {label_convention(mapping)}: name the csf label and at least one lesion label "
                         f"(e.g. {example})")
    return mapping


def read_label_map(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D label map from NIfTI (nibabel) or NRRD (pynrrd): ``(integer array indexed (i, j, k), voxel->RAS
    affine)``.

    Raises
    ------
    InputError
        Missing or unreadable file, not 3-D, or values that are not whole numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"segmentation file {path} does not exist")
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            image = nib.load(str(path))
            data, affine = np.asanyarray(image.dataobj), np.asarray(image.affine, dtype=float)
        elif name.endswith((".nrrd", ".nhdr")):
            import nrrd

            data, header = nrrd.read(str(path), index_order="F")
            kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * data.ndim)]
            spatial = [axis for axis, kind in enumerate(kinds) if kind in ("domain", "space")]
            others = [axis for axis in range(data.ndim) if axis not in spatial]
            if len(spatial) != 3 or any(data.shape[axis] != 1 for axis in others):
                raise InputError(f"{path}: expected a 3-D label map, found axes of kinds {kinds}")
            data = data.reshape([data.shape[axis] for axis in spatial]) if others else data
            affine = affine_from_nrrd(header, spatial, path)
        else:
            raise InputError(f"{path}: give a .seg.nrrd, or a label map as NIfTI (.nii, .nii.gz) or NRRD (.nrrd)")
    except InputError:
        raise
    except Exception as exc:  # nibabel and pynrrd raise several types for unreadable files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable label map ({first})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3-D label map, got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.integer):
        values = np.asarray(data, dtype=np.float64)
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise InputError(f"{path}: the label map holds values that are not whole numbers (a probability map or "
                             "an image, not labels?)")
        data = values
    return np.rint(data).astype(np.int32), affine


def _named_reading_segments(data: SegmentationData, path: Path) -> SegmentationData:
    """Segments renamed to ``lesion_right``/``lesion_left``/``csf`` by their ID or name."""
    masks: dict[str, np.ndarray] = {}
    segments: list[SegmentSpec] = []
    unknown = []
    for spec in data.segments:
        segment_id = reading_segment_id(spec.segment_id) or reading_segment_id(spec.name)
        if segment_id is None:
            unknown.append(spec.name)
            continue
        if segment_id in masks:
            raise InputError(f"{path}: two segments are named like {segment_id}; keep one")
        masks[segment_id] = data.masks[spec.segment_id]
        segments.append(dataclasses.replace(spec, segment_id=segment_id))
    if unknown:
        raise InputError(
            f"{path} has segment(s) {', '.join(map(repr, unknown))}; only lesion_right, lesion_left and csf are "
            "allowed (rename them, e.g. 'lesion right', 'CSF', or delete the others)"
        )
    return SegmentationData(masks=masks, segments=segments, affine_ras=data.affine_ras,
                            segmentation_fields=data.segmentation_fields)


def read_reading(path: str | os.PathLike, labels: str | Mapping[str, int] | None = None) -> SegmentationData:
    """A reading's segmentation as saved by any tool, with segments ``lesion_right``, ``lesion_left``, ``csf``.

    Parameters
    ----------
    path : path-like
        A ``.seg.nrrd`` whose segments are named (by ID or name, case-insensitive, a few aliases such as
        "CSF" or "lesion right"), tagged by a reading session or not; or a label map (NIfTI, or NRRD
        without segment fields) whose values follow ``labels``.
    labels : str or mapping, optional
        Label value of each segment of a label map (:func:`parse_label_mapping`); default
        :data:`DEFAULT_LABELS` (lesion_right=1, lesion_left=2, csf=3).

    Returns
    -------
    SegmentationData
        On the file's own grid; segment tags as stored (none for a label map).

    Raises
    ------
    InputError
        Unreadable file, unknown segment names or label values (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"segmentation file {path} does not exist")
    name = path.name.lower()
    if not name.endswith(_LABEL_MAP_SUFFIXES):
        raise InputError(f"{path}: give a .seg.nrrd, or a label map as NIfTI (.nii, .nii.gz) or NRRD (.nrrd)")
    if name.endswith((".nrrd", ".nhdr")):
        import nrrd

        try:
            header = nrrd.read_header(str(path))
        except Exception as exc:  # pynrrd raises several types for malformed headers
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{path} is not a readable NRRD file ({first})") from None
        if any(key.startswith("Segment") and key.endswith("_ID") for key in header):
            if labels is not None:
                raise InputError(f"{path} is a segmentation with named segments (matched by name); --labels is "
                                 "for label maps")
            return _named_reading_segments(read_seg_nrrd(path), path)
    mapping = parse_label_mapping(labels)
    values, affine = read_label_map(path)
    found = {int(v) for v in np.unique(values) if v != 0}
    unnamed = sorted(found - set(mapping.values()))
    if unnamed:
        raise InputError(f"{path}: label(s) {', '.join(map(str, unnamed))} are not in the label convention "
                         f"{label_convention(mapping)}; give the labels with --labels, e.g. "
                         f"--labels {label_convention(mapping)}")
    masks = {segment_id: values == value for segment_id, value in mapping.items() if value in found}
    specs = [SegmentSpec(segment_id, segment_id, (0.5, 0.5, 0.5), {}) for segment_id in masks]
    return SegmentationData(masks=masks, segments=specs, affine_ras=affine)
