"""The checks a reading's segmentation must pass before the store records it.

A reading has one or more drawn lesion segments (``lesion_right``/``lesion_left``) and a drawn ``csf``
reference, lies on its case's QSM grid (or is resampled onto it on request), and carries no session tags
of another case, observer or session. Segments drawn in another tool are stamped with the session's tags
and this project's names, colours and terminology.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import InputError, ReadingError, one_line
from ..io.grid import resample_masks
from ..io.label_maps import read_reading
from ..terminology import (READING_SEGMENT_IDS, READING_TAG_KEYS, SIDES, TAG_PREFIX, csf_segment, lesion_segment,
                            reading_tags)

__all__ = ["check_drawing", "validated_segmentation", "nifti_grid"]


def check_drawing(session, voxel_counts) -> None:
    """Refuse, in words a reader acts on, a drawing that cannot be recorded as a reading yet.

    A reading needs one or more drawn lesion segments (``lesion_right``/``lesion_left``) and a drawn
    ``csf`` reference, as :meth:`Study.finish_reading` checks for the file; the reading fronts call this on
    the segment voxel counts (segment ID -> voxels) before they save, so the reader is told what to
    draw rather than which file was refused.

    Raises
    ------
    ReadingError
    """
    missing = []
    if not any(voxel_counts.get(f"lesion_{side}", 0) > 0 for side in SIDES):
        missing.append("no lesion is drawn: paint it in segment lesion_right or lesion_left")
    if voxel_counts.get("csf", 0) <= 0:
        missing.append("the CSF reference is empty: draw it in segment csf, in the posterior horns of the "
                       "lateral ventricles")
    if missing:
        raise ReadingError(f"case {session.case_id}, reading {session.reading} cannot be finished yet: "
                            + "; ".join(missing))


def validated_segmentation(path: Path, case, observer: str, reading: int, where: str, *,
                           expected_session_uid: str | None, session_uid: str, labels=None,
                           resample: bool = False):
    """Check a reading's segmentation; returns masks on the QSM grid, updated specs and the QSM affine.

    ``expected_session_uid``: the SessionUID tag the file must carry where it has one (None: any);
    ``session_uid``: the SessionUID written into the stored file. ``labels``, ``resample``: see
    :meth:`Study.finish_reading`.
    """
    try:
        data = read_reading(path, labels)
    except InputError as exc:
        raise ReadingError(f"{where}: {one_line(exc)}") from None
    shape, affine = nifti_grid(case.qsm_path, f"case {case.case_id}: QSM map")
    try:
        masks = data.on_grid(shape, affine)
    except InputError as exc:
        if not resample:
            raise ReadingError(f"{where}: {path} is not on the QSM grid of the case: {one_line(exc)}; or pass "
                               "--resample to resample it onto the QSM (nearest neighbour)") from None
        masks = resample_masks(data.masks, data.affine_ras, shape, affine)
    ids = [s.segment_id for s in data.segments]
    unexpected = [i for i in ids if i not in READING_SEGMENT_IDS]
    if unexpected:
        raise ReadingError(
            f"{where}: {path} has segment(s) {', '.join(map(repr, unexpected))}; only lesion_right, "
            "lesion_left and csf are allowed (delete or rename the others in Slicer)"
        )
    lesions = [i for i in ids if i.startswith("lesion_")]
    if not lesions:
        raise ReadingError(f"{where}: {path} has no lesion segment (lesion_right or lesion_left)")
    if "csf" not in ids:
        raise ReadingError(f"{where}: {path} has no 'csf' reference segment")
    for segment_id in lesions + ["csf"]:
        if not masks[segment_id].any():
            raise ReadingError(f"{where}: segment {segment_id!r} in {path} is empty")
    prefix = TAG_PREFIX
    specs = []
    for spec in data.segments:
        tags = dict(spec.tags)
        # A segment drawn in another tool carries no session tags: it is stamped with this session's.
        drawn_elsewhere = not any(key in tags for key in READING_TAG_KEYS)
        for key, expected, required in (
            ("CaseID", case.case_id, True),
            ("Observer", observer, True),
            ("Reading", str(reading), False),
            ("SessionUID", expected_session_uid, False),
            ("LesionType", case.lesion_type if spec.segment_id != "csf" else None, False),
            ("Side", spec.segment_id.removeprefix("lesion_") if spec.segment_id != "csf" else None, False),
            ("Role", "csf" if spec.segment_id == "csf" else "lesion", False),
        ):
            value = tags.get(prefix + key)
            if value is None:
                if required and not drawn_elsewhere:
                    raise ReadingError(
                        f"{where}: segment {spec.segment_id!r} in {path} has no {prefix}{key} tag; "
                        "save the segmentation from the reading session"
                    )
                continue
            if expected is not None and value != expected:
                raise ReadingError(
                    f"{where}: segment {spec.segment_id!r} in {path} is tagged {prefix}{key}={value!r}, "
                    f"expected {expected!r} (wrong file?)"
                )
        base = (csf_segment({}) if spec.segment_id == "csf"
                else lesion_segment(spec.segment_id.removeprefix("lesion_"), case.lesion_type, {}))
        tags.update(base.tags)
        tags.update(reading_tags(observer=observer, reading=reading, case_id=case.case_id, session_uid=session_uid,
                                 status="finished"))
        if drawn_elsewhere:  # this project's name, colour and terminology
            specs.append(dataclasses.replace(base, tags=tags))
        else:
            specs.append(dataclasses.replace(spec, tags=tags, terminology=spec.terminology or base.terminology))
    return masks, specs, affine


def nifti_grid(path: Path, what: str) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and voxel->RAS affine (mm) of a 3-D NIfTI image; ``what`` names it in errors."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise InputError(f"{what} {path} is not a readable NIfTI image: {one_line(exc)}") from exc
    shape = tuple(int(n) for n in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{what} {path} has shape {image.shape}; a 3-D volume is required")
    return shape, np.asarray(image.affine, dtype=float)
