"""Radiomic features of QSM lesions with PyRadiomics, and CSF-referenced mean and median χ.

Each reading is one QSM volume and one segmentation holding lesion segments (``lesion_right``,
``lesion_left``) and a ``csf`` segment. χ is referenced to that reading's CSF mean (each observer draws
CSF), then PyRadiomics' ``RadiomicsFeatureExtractor`` computes the study's 107 features on the
referenced map with the parameter file ``Resources/QSMRadiomics.yaml`` (bin width in ppm).
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import RadiomicsError
from .progress import ProgressCallback, report

log = logging.getLogger(__name__)

FEATURE_COLUMNS = ["case_id", "lesion_id", "lesion_type", "observer", "reading", "feature", "value", "reason"]
STUDY_FEATURE_COUNTS = {"firstorder": 18, "shape": 14, "glcm": 24, "glrlm": 16, "glszm": 16, "gldm": 14, "ngtdm": 5}
MIN_GREY_LEVELS, MAX_GREY_LEVELS = 3, 64


def default_params_path() -> Path:
    """``Resources/QSMRadiomics.yaml`` of the source tree or of the installed extension."""
    # Source tree: <repo>/Resources; installed extension: qt-scripted-modules/Resources (see CMakeLists.txt).
    candidate = Path(__file__).resolve().parent.parent / "Resources" / "QSMRadiomics.yaml"
    if candidate.exists():
        return candidate
    raise RadiomicsError("the radiomics parameter file Resources/QSMRadiomics.yaml was not found; pass --params")


def make_extractor(params_path=None):
    """A PyRadiomics extractor configured from a parameter file (PyRadiomics' own YAML format)."""
    try:
        from radiomics import featureextractor
    except ImportError:
        raise RadiomicsError(
            "PyRadiomics is not installed. Outside Slicer run `make venv`; inside 3D Slicer install the "
            "SlicerRadiomics extension from the Extensions Manager."
        ) from None
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    path = Path(params_path) if params_path else default_params_path()
    if not path.exists():
        raise RadiomicsError(f"{path}: parameter file not found")
    try:
        return featureextractor.RadiomicsFeatureExtractor(str(path))
    except Exception as exc:  # pykwalify/yaml raise many types for invalid files
        raise RadiomicsError(f"{path}: not a valid PyRadiomics parameter file ({exc})") from None


def to_sitk(array_ijk: np.ndarray, affine_ras: np.ndarray):
    """(i, j, k) array + voxel→RAS affine → SimpleITK image with LPS geometry."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array_ijk, (2, 1, 0))))
    spacing = np.sqrt((affine_ras[:3, :3] ** 2).sum(0))
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine_ras[:3, :3]
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (lps / spacing).ravel()])
    image.SetOrigin([float(v) for v in np.diag([-1.0, -1.0, 1.0]) @ affine_ras[:3, 3]])
    return image


@dataclass(frozen=True)
class RoiFeatures:
    """Features of one ROI: name → value (NaN where undefined) and name → reason for NaN."""

    values: dict
    reasons: dict


def roi_features(extractor, chi_ppm: np.ndarray, roi: np.ndarray, affine_ras: np.ndarray) -> RoiFeatures:
    """107 PyRadiomics features of ``roi`` on ``chi_ppm`` (already CSF-referenced)."""
    roi = np.asarray(roi, bool)
    values, reasons = {}, {}
    values["qsm_mean"] = float(chi_ppm[roi].mean())
    values["qsm_median"] = float(np.median(chi_ppm[roi]))
    bin_width = float(extractor.settings.get("binWidth", 25))
    spread = float(chi_ppm[roi].max() - chi_ppm[roi].min())
    levels = int(math.floor(chi_ppm[roi].max() / bin_width) - math.floor(chi_ppm[roi].min() / bin_width)) + 1
    if levels < MIN_GREY_LEVELS or levels > MAX_GREY_LEVELS:
        log.warning("ROI of %d voxels spans %.3f ppm = %d grey levels at bin width %g ppm (outside %d-%d)",
                    roi.sum(), spread, levels, bin_width, MIN_GREY_LEVELS, MAX_GREY_LEVELS)
    image = to_sitk(chi_ppm.astype(np.float64), affine_ras)
    mask = to_sitk(roi.astype(np.uint8) * int(extractor.settings.get("label", 1)), affine_ras)
    try:
        result = extractor.execute(image, mask)
    except Exception as exc:  # PyRadiomics raises ValueError/AssertionError for degenerate ROIs
        reason = f"PyRadiomics could not compute features for this ROI ({roi.sum()} voxels): {exc}"
        return RoiFeatures(values, {"*": reason})
    for name, value in result.items():
        if name.startswith("diagnostics_"):
            continue
        v = float(np.asarray(value))
        values[name] = v
        if not np.isfinite(v):
            reasons[name] = "undefined for this ROI (division by zero or too few voxels/grey levels)"
    return RoiFeatures(values, reasons)


_WORKER_EXTRACTOR = None


def _init_worker(params_path):
    global _WORKER_EXTRACTOR
    _WORKER_EXTRACTOR = make_extractor(params_path)


def features_for_reading(reading, extractor=None, feature_names=None) -> list[dict]:
    """Long-table rows for every lesion segment of one reading (CSF-referenced χ)."""
    from .io import load_volume
    from .segio import read_seg_nrrd

    extractor = extractor or _WORKER_EXTRACTOR
    qsm, affine = load_volume(reading.qsm_path)
    seg = read_seg_nrrd(reading.segmentation_path)
    where = f"case {reading.case_id}, observer {reading.observer}, reading {reading.reading}"
    if tuple(next(iter(seg.masks.values())).shape) != qsm.shape or not np.allclose(seg.affine_ras, affine, atol=1e-3):
        raise RadiomicsError(f"{where}: the segmentation is not on the QSM grid ({reading.segmentation_path})")
    csf = seg.masks.get("csf")
    if csf is None or not csf.any():
        raise RadiomicsError(f"{where}: the CSF segment is missing or empty")
    chi_ref = qsm - float(qsm[csf].mean())
    rows = []
    lesions = sorted(k for k in seg.masks if k.startswith("lesion_"))
    if not lesions:
        raise RadiomicsError(f"{where}: the segmentation has no lesion segment")
    for seg_id in lesions:
        roi = seg.masks[seg_id]
        if not roi.any():
            raise RadiomicsError(f"{where}: lesion segment {seg_id} is empty")
        feats = roi_features(extractor, chi_ref, roi, affine)
        names = list(feats.values) if feature_names is None else feature_names
        for name in names:
            value = feats.values.get(name, float("nan"))
            reason = feats.reasons.get(name) or feats.reasons.get("*", "") if not np.isfinite(value) else ""
            rows.append(dict(case_id=reading.case_id, lesion_id=seg_id.removeprefix("lesion_"),
                             lesion_type=reading.lesion_type, observer=reading.observer, reading=int(reading.reading),
                             feature=name, value=value, reason=reason))
    return rows


def _worker(reading):
    return features_for_reading(reading)


def extract_readings(readings, *, params_path=None, progress: ProgressCallback | None = None,
                     workers: int | None = None) -> pd.DataFrame:
    """The long feature table (``FEATURE_COLUMNS``) of every reading, computed in ``workers`` processes."""
    readings = list(readings)
    if not readings:
        raise RadiomicsError("there are no finished readings to extract features from")
    workers = workers or min(len(readings), os.cpu_count() or 1)
    rows = []
    report(progress, 0.0, f"radiomics: {len(readings)} readings")
    if workers <= 1:
        _init_worker(params_path)
        for i, r in enumerate(readings):
            rows.extend(features_for_reading(r))
            report(progress, (i + 1) / len(readings), f"radiomics {r.case_id} {r.observer} R{r.reading}")
    else:
        make_extractor(params_path)  # fail early, in this process, on a bad parameter file
        plain = [_PlainReading.of(r) for r in readings]
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(params_path,)) as pool:
            for i, part in enumerate(pool.map(_worker, plain, chunksize=max(1, len(plain) // (8 * workers)))):
                rows.extend(part)
                report(progress, (i + 1) / len(plain), f"radiomics {plain[i].case_id} {plain[i].observer} R{plain[i].reading}")
    return pd.DataFrame(rows, columns=FEATURE_COLUMNS)


@dataclass(frozen=True)
class _PlainReading:
    """Picklable copy of the attributes extraction needs."""

    case_id: str
    lesion_type: str
    observer: str
    reading: int
    qsm_path: str
    segmentation_path: str

    @classmethod
    def of(cls, r):
        return cls(str(r.case_id), str(r.lesion_type), str(r.observer), int(r.reading), str(r.qsm_path),
                   str(r.segmentation_path))


def load_image(path) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D image from NIfTI (nibabel) or NRRD/other ITK formats, as ((i, j, k) array, voxel→RAS affine)."""
    from .io import load_volume

    path = Path(path)
    if path.name.endswith((".nii", ".nii.gz")):
        return load_volume(path)
    import SimpleITK as sitk

    from .dicom import sitk_to_ras

    if not path.exists():
        raise RadiomicsError(f"{path}: file not found")
    try:
        return sitk_to_ras(sitk.ReadImage(str(path)))
    except RuntimeError as exc:
        raise RadiomicsError(f"{path}: not a readable image ({str(exc).splitlines()[0]})") from None


def _on_grid(mask: np.ndarray, mask_affine, shape, affine, resample: bool, where: str) -> np.ndarray:
    if mask.shape == tuple(shape) and np.allclose(mask_affine, affine, atol=1e-3):
        return mask
    if not resample:
        raise RadiomicsError(f"{where}: the segmentation grid {mask.shape} differs from the QSM grid {tuple(shape)}; "
                             "re-save it on the QSM or pass --resample (nearest neighbour)")
    from scipy import ndimage

    # voxel of the QSM → RAS → voxel of the mask
    transform = np.linalg.inv(mask_affine) @ affine
    return ndimage.affine_transform(mask.astype(np.uint8), transform[:3, :3], transform[:3, 3], output_shape=shape,
                                    order=0, mode="constant") > 0


def extract_files(qsm_path, segmentation_paths, *, params_path=None, resample: bool = False,
                  csf_label: int | None = None) -> pd.DataFrame:
    """``qsmrepro extract``: features of every lesion ROI in ``.seg.nrrd`` files or label maps.

    A ``.seg.nrrd`` contributes its ``lesion_*`` segments, referenced to its ``csf`` segment when present,
    with case, observer and reading from its tags. A label map contributes one ROI per non-zero label
    (``label<N>``), referenced to ``csf_label`` when given.
    """
    from .segio import TAG_PREFIX, read_seg_nrrd

    qsm, affine = load_image(qsm_path)
    extractor = make_extractor(params_path)
    rows = []
    for seg_path in segmentation_paths:
        seg_path = Path(seg_path)
        if seg_path.name.endswith(".seg.nrrd"):
            seg = read_seg_nrrd(seg_path)
            masks = {k: _on_grid(m, seg.affine_ras, qsm.shape, affine, resample, str(seg_path)) for k, m in seg.masks.items()}
            tags = seg.segments[0].tags if seg.segments else {}
            meta = dict(case_id=tags.get(TAG_PREFIX + "CaseID", seg_path.name.split(".")[0]),
                        observer=tags.get(TAG_PREFIX + "Observer", ""),
                        reading=int(tags.get(TAG_PREFIX + "Reading", 1) or 1))
            types = {s.segment_id: s.tags.get(TAG_PREFIX + "LesionType", "") for s in seg.segments}
            csf = masks.get("csf")
            rois = {k.removeprefix("lesion_"): (m, types.get(k, "")) for k, m in masks.items() if k.startswith("lesion_")}
        else:
            labels, lab_affine = load_image(seg_path)
            labels = np.rint(labels).astype(np.int32)
            if labels.shape != qsm.shape or not np.allclose(lab_affine, affine, atol=1e-3):
                if not resample:
                    raise RadiomicsError(f"{seg_path}: label map grid {labels.shape} differs from the QSM grid "
                                         f"{qsm.shape}; re-save it on the QSM or pass --resample (nearest neighbour)")
                from scipy import ndimage

                transform = np.linalg.inv(lab_affine) @ affine
                labels = ndimage.affine_transform(labels, transform[:3, :3], transform[:3, 3], output_shape=qsm.shape,
                                                  order=0, mode="constant")
            meta = dict(case_id=seg_path.name.split(".")[0], observer="", reading=1)
            csf = labels == csf_label if csf_label is not None else None
            rois = {f"label{v}": (labels == v, "") for v in np.unique(labels) if v != 0 and v != csf_label}
        if not rois:
            raise RadiomicsError(f"{seg_path}: no lesion ROI found")
        offset = 0.0
        if csf is not None:
            if not csf.any():
                raise RadiomicsError(f"{seg_path}: the CSF ROI is empty")
            offset = float(qsm[csf].mean())
        for lesion_id, (roi, lesion_type) in sorted(rois.items()):
            if not roi.any():
                raise RadiomicsError(f"{seg_path}: ROI {lesion_id} is empty (case {meta['case_id']}, observer "
                                     f"{meta['observer'] or '-'}, reading {meta['reading']})")
            feats = roi_features(extractor, qsm - offset, roi, affine)
            for name, value in feats.values.items():
                reason = (feats.reasons.get(name) or feats.reasons.get("*", "")) if not np.isfinite(value) else ""
                rows.append(dict(meta, lesion_id=lesion_id, lesion_type=lesion_type, feature=name, value=value,
                                 reason=reason))
    return pd.DataFrame(rows, columns=FEATURE_COLUMNS)
