"""Radiomic features of QSM lesions with PyRadiomics, and CSF-referenced mean and median χ.

Each reading is one QSM volume and one segmentation holding lesion segments (``lesion_right``,
``lesion_left``) and a ``csf`` segment. χ is referenced to that reading's CSF mean (each observer draws
CSF), then PyRadiomics' ``RadiomicsFeatureExtractor`` computes the study's 107 features on the
referenced map with the parameter file ``Resources/QSMRadiomics.yaml`` (bin width in ppm).

Every ROI contributes one row per feature name, always: a feature PyRadiomics cannot compute for an ROI
(a single voxel, a single grey level, a division by zero) is NaN with its reason in the ``reason``
column. ROIs whose discretised intensities span fewer than :data:`MIN_GREY_LEVELS` or more than
:data:`MAX_GREY_LEVELS` grey levels are logged and flagged in the ``note`` column of their features that
depend on the discretisation (texture, first-order entropy and uniformity).

Reference: van Griethuysen JJM et al. Computational radiomics system to decode the radiographic
phenotype. Cancer Res 2017;77:e104-e107.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError, RadiomicsError
from .feature_table import FEATURE_COLUMNS, QSM_FEATURES, complete_table
from .progress import ProgressCallback, notify

log = logging.getLogger(__name__)

STUDY_FEATURE_COUNTS = {"firstorder": 18, "shape": 14, "glcm": 24, "glrlm": 16, "glszm": 16, "gldm": 14, "ngtdm": 5}
# Fewer than 3 levels leave texture matrices with one or two rows; more than 64 levels in a lesion of a few
# dozen voxels leave most matrix cells holding a single voxel. Both make texture features unstable.
MIN_GREY_LEVELS, MAX_GREY_LEVELS = 3, 64
# Features whose values depend on the intensity discretisation: the texture classes, first-order entropy and
# uniformity (the other first-order features and the shape features do not).
_TEXTURE_CLASSES = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")
_BINNED_FIRST_ORDER = ("firstorder_Entropy", "firstorder_Uniformity")
# Extra voxels kept around the ROI when cropping before resampling: SimpleITK's B-spline interpolation
# prefilters the whole image with a recursive filter whose pole (|z| = 0.268 for cubic splines; Unser 1999,
# IEEE Signal Process Mag 16:22-38) makes the influence of a voxel 16 voxels away < 1e-9 of its value.
_SPLINE_MARGIN_VOXELS = 16


def default_params_path() -> Path:
    """``Resources/QSMRadiomics.yaml`` of the source tree or of the installed extension."""
    # Source tree: <repo>/Resources; installed extension: qt-scripted-modules/Resources (see CMakeLists.txt).
    candidate = Path(__file__).resolve().parent.parent / "Resources" / "QSMRadiomics.yaml"
    if candidate.exists():
        return candidate
    raise RadiomicsError("the radiomics parameter file Resources/QSMRadiomics.yaml was not found; pass --params")


def make_extractor(params_path=None):
    """A PyRadiomics extractor configured from a parameter file (PyRadiomics' own YAML format).

    Parameters
    ----------
    params_path : path-like, optional
        Parameter file; default :func:`default_params_path`.

    Raises
    ------
    RadiomicsError
        PyRadiomics is missing, or the file is missing or not a valid parameter file.
    """
    try:
        import radiomics
        from radiomics import featureextractor
    except ImportError:
        raise RadiomicsError(
            "PyRadiomics is not installed. Outside Slicer run `make venv`; inside 3D Slicer install the "
            "SlicerRadiomics extension from the Extensions Manager."
        ) from None
    # Failures of single features reach the table as reasons (see _FailureLog), not as stderr noise.
    radiomics.setVerbosity(logging.CRITICAL)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    path = Path(params_path) if params_path else default_params_path()
    if not path.exists():
        raise RadiomicsError(f"{path}: parameter file not found")
    try:
        return featureextractor.RadiomicsFeatureExtractor(str(path))
    except Exception as exc:  # pykwalify/yaml raise many types for invalid files
        raise RadiomicsError(f"{path}: not a valid PyRadiomics parameter file ({exc})") from None


def feature_names(extractor) -> list[str]:
    """Every feature name one ROI yields with this extractor: ``qsm_mean``, ``qsm_median``, then PyRadiomics'.

    Names are those PyRadiomics gives (``original_<class>_<feature>``): for a class enabled with an empty
    list, its non-deprecated features. Only the ``Original`` image type has names known before extraction;
    names of filtered image types (wavelet, LoG...) are completed from the ROIs that yielded them.
    """
    from radiomics import getFeatureClasses

    classes = getFeatureClasses()
    names = list(QSM_FEATURES)
    settings = extractor.settings
    for class_name, enabled in extractor.enabledFeatures.items():
        if class_name not in classes:
            continue
        if class_name == "shape2D" and not settings.get("force2D", False):
            continue
        if not class_name.startswith("shape") and "Original" not in extractor.enabledImagetypes:
            continue
        features = list(enabled) if enabled else [n for n, deprecated in classes[class_name].getFeatureNames().items()
                                                  if not deprecated]
        names.extend(f"original_{class_name}_{f}" for f in features)
    return names


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
    """Features of one ROI.

    Attributes
    ----------
    values : dict
        Feature name → value (NaN where undefined); every name of :func:`feature_names` is present.
    reasons : dict
        Feature name → why its value is NaN (only for NaN values).
    note : str
        A remark on the whole ROI (grey-level count outside the advised range), else "".
    grey_levels : int
        Grey levels the ROI spans at the extractor's bin width (0 when a bin count is set instead).
    """

    values: dict
    reasons: dict
    note: str = ""
    grey_levels: int = 0


def grey_levels(values_ppm: np.ndarray, bin_width: float) -> int:
    """Number of grey levels (bins) that ``values_ppm`` span after fixed-bin-width discretisation.

    PyRadiomics and the IBSI (Zwanenburg et al. 2020, sec. 2.7, fixed bin size) discretise x into
    ``floor(x / w) - floor(min(x) / w) + 1``; the levels run from 1 to this function's value.
    """
    values_ppm = np.asarray(values_ppm, dtype=np.float64)
    return int(np.floor(values_ppm.max() / bin_width) - np.floor(values_ppm.min() / bin_width)) + 1


class _FailureLog(logging.Handler):
    """Collects PyRadiomics' "FAILED: <traceback>" records of single features during one extraction.

    Each feature class logs through the logger of its module (``radiomics.glcm``...); the traceback names
    the feature's ``get<Feature>FeatureValue`` method.
    """

    _FEATURE = re.compile(r"\bget(\w+)FeatureValue\b")

    def __init__(self):
        super().__init__(logging.ERROR)
        self.failures: dict[tuple[str, str], str] = {}

    def emit(self, record):
        text = record.getMessage()
        found = self._FEATURE.findall(text)
        if found:
            lines = text.strip().splitlines()
            self.failures[(record.name.rsplit(".", 1)[-1], found[-1])] = lines[-1].strip()


def _crop_box(roi: np.ndarray, settings, spacing_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Voxel bounds [lo, hi) of a box around ``roi`` on which PyRadiomics computes the same values as on the
    whole image, or None when there is none smaller than the image.

    Segment-based extraction of the Original image reads only the ROI's bounding box (PyRadiomics crops to
    it with no padding), unless the image is normalised (whole-image statistics). Resampling builds its
    grid ``padDistance`` new voxels beyond the ROI, phased on the image's first voxel, and interpolates
    from further out: the box then keeps that margin plus the spline's reach, and starts at a voxel
    where the resampled lattice has the same phase as at voxel 0.
    """
    if settings.get("normalize", False):
        return None
    where = np.nonzero(roi)
    first = np.array([w.min() for w in where])
    last = np.array([w.max() for w in where])
    pad = int(settings.get("padDistance", 5) or 0)
    new_spacing = settings.get("resampledPixelSpacing")
    if not new_spacing:
        return np.maximum(first - 1, 0), np.minimum(last + 2, roi.shape)
    new = np.array([float(n) if float(n) > 0 else float(o) for n, o in zip(new_spacing, spacing_mm)])
    margin = np.ceil((pad + 2) * new / spacing_mm).astype(int) + _SPLINE_MARGIN_VOXELS
    lo = np.maximum(first - margin, 0)
    steps = new / spacing_mm  # resampled voxel size in original voxels
    for axis in range(3):
        while lo[axis] > 0 and abs(lo[axis] / steps[axis] - round(lo[axis] / steps[axis])) > 1e-6:
            lo[axis] -= 1
    return lo, np.minimum(last + 1 + margin, roi.shape)


def roi_features(extractor, chi_ppm: np.ndarray, roi: np.ndarray, affine_ras: np.ndarray, *,
                 crop: bool = True) -> RoiFeatures:
    """The features of one ROI: ``qsm_mean``, ``qsm_median`` and PyRadiomics' features.

    Parameters
    ----------
    extractor : radiomics.featureextractor.RadiomicsFeatureExtractor
        From :func:`make_extractor`.
    chi_ppm : numpy.ndarray
        χ in ppm, indexed (i, j, k), already referenced (e.g. to the reading's CSF).
    roi : numpy.ndarray of bool
        The lesion, same shape as ``chi_ppm``; must not be empty.
    affine_ras : numpy.ndarray
        4x4 voxel→RAS affine in mm.
    crop : bool
        Hand PyRadiomics only the ROI's bounding box plus the margin it reads (same values, much faster on
        whole-brain volumes); ignored when a filtered image type or normalisation needs the whole image.

    Returns
    -------
    RoiFeatures
        Every name of :func:`feature_names` (plus any further names PyRadiomics returns); NaN values carry
        their reason.
    """
    roi = np.asarray(roi, bool)
    n_voxels = int(np.count_nonzero(roi))
    if n_voxels == 0:
        raise RadiomicsError("the ROI is empty")
    inside = chi_ppm[roi].astype(np.float64)
    values = {"qsm_mean": float(inside.mean()), "qsm_median": float(np.median(inside))}
    reasons: dict[str, str] = {}
    settings = extractor.settings

    note, levels = "", 0
    if settings.get("binCount") is None:
        bin_width = float(settings.get("binWidth", 25))
        levels = grey_levels(inside, bin_width)
        if levels < MIN_GREY_LEVELS or levels > MAX_GREY_LEVELS:
            note = (f"{levels} grey level(s) at bin width {bin_width:g} (advised {MIN_GREY_LEVELS}-{MAX_GREY_LEVELS}): "
                    f"texture features of this ROI are unreliable")

    image_array, roi_crop, affine_crop = chi_ppm, roi, affine_ras
    bounds = None
    if crop and set(extractor.enabledImagetypes) <= {"Original"}:
        bounds = _crop_box(roi, settings, np.sqrt((affine_ras[:3, :3] ** 2).sum(0)))
    if bounds is not None:
        lo, hi = bounds
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        image_array, roi_crop = chi_ppm[box], roi[box]
        affine_crop = affine_ras.copy()
        affine_crop[:3, 3] = affine_ras[:3, :3] @ lo + affine_ras[:3, 3]
    image = to_sitk(np.asarray(image_array, dtype=np.float64), affine_crop)
    mask = to_sitk(roi_crop.astype(np.uint8) * np.uint8(int(settings.get("label", 1))), affine_crop)

    failures = _FailureLog()
    radiomics_log = logging.getLogger("radiomics")
    radiomics_log.addHandler(failures)
    try:
        # numpy's "mean of empty slice" and division warnings become NaN values with a reason below
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            result = extractor.execute(image, mask)
    except Exception as exc:  # PyRadiomics raises ValueError for ROIs it refuses (single voxel, too few dims)
        reason = f"PyRadiomics computes no feature for this ROI ({n_voxels} voxel(s)): {str(exc).strip()}"
        result = {}
    else:
        described = f"{n_voxels} voxel(s), {levels} grey level(s)" if levels else f"{n_voxels} voxel(s)"
        reason = f"undefined for this ROI ({described}): PyRadiomics returned a non-finite value"
    finally:
        radiomics_log.removeHandler(failures)

    for name, value in result.items():
        if name.startswith("diagnostics_"):
            continue
        try:
            values[name] = float(np.asarray(value))
        except (TypeError, ValueError):
            values[name] = math.nan
    for name in feature_names(extractor):
        values.setdefault(name, math.nan)
    for name, value in values.items():
        if np.isfinite(value):
            continue
        parts = name.split("_")
        failed = failures.failures.get((parts[1], parts[2])) if len(parts) >= 3 else None
        if not np.isfinite(inside).all():
            reasons[name] = "the QSM holds NaN or infinite values inside this ROI"
        elif failed:
            reasons[name] = f"PyRadiomics failed on this ROI ({n_voxels} voxel(s)): {failed}"
        elif result and name not in result:
            reasons[name] = "not returned by PyRadiomics for this ROI"
        else:
            reasons[name] = reason
    return RoiFeatures(values, reasons, note, levels)


def _roi_rows(meta: dict, lesion_id: str, lesion_type: str, feats: RoiFeatures) -> list[dict]:
    rows = []
    for name, value in feats.values.items():
        parts = name.split("_")
        binned = name.endswith(_BINNED_FIRST_ORDER) or (len(parts) >= 3 and parts[1] in _TEXTURE_CLASSES)
        rows.append(dict(meta, lesion_id=lesion_id, lesion_type=lesion_type, feature=name, value=value,
                         reason=(feats.reasons.get(name) or "undefined for this ROI") if not np.isfinite(value) else "",
                         note=feats.note if binned else ""))
    return rows


def reference_to_csf(chi_ppm: np.ndarray, csf_mask: np.ndarray | None, *, where: str) -> np.ndarray:
    """χ relative to the reading's CSF, in ppm: χ − mean(χ inside the CSF ROI).

    The study references every reading to the CSF its observer drew in the posterior horns of the lateral
    ventricles (Park et al., Sci Rep 2023, Methods, "QSM was normalized relative to the CSF"), so that mean
    and median χ of a lesion do not depend on the arbitrary constant offset of a reconstructed χ map.

    Parameters
    ----------
    chi_ppm : numpy.ndarray
        χ in ppm, indexed (i, j, k).
    csf_mask : numpy.ndarray of bool or None
        The CSF ROI on the same grid; None when the segmentation has none.
    where : str
        The reading (file, case, observer, reading) named in the error message.

    Raises
    ------
    RadiomicsError
        The CSF ROI is missing or empty.
    """
    if csf_mask is None or not np.any(csf_mask):
        raise RadiomicsError(f"{where}: the CSF segment is missing or empty; draw CSF in the posterior horns of "
                             "the lateral ventricles")
    return chi_ppm - float(chi_ppm[np.asarray(csf_mask, bool)].mean())


def _grid_masks(masks: dict, mask_affine, shape, affine, resample: bool | None, where: str) -> dict:
    """Masks on the QSM grid: as they are, re-indexed (flips/permutations/crops of the same lattice), or
    resampled with nearest neighbour when ``resample``; refused otherwise (``resample=None``: the caller
    offers no resampling)."""
    from .segio import SegmentationData

    shape = tuple(shape)
    first = next(iter(masks.values()), None)
    if first is None or (first.shape == shape and np.allclose(mask_affine, affine, atol=1e-3)):
        return masks
    try:
        return SegmentationData(masks=masks, segments=[], affine_ras=np.asarray(mask_affine, float)).on_grid(
            shape, affine)
    except InputError as exc:
        if not resample:
            hint = "re-save it on the QSM in Slicer" + (" or pass --resample (nearest neighbour)"
                                                        if resample is not None else "")
            raise RadiomicsError(f"{where}: the segmentation grid {first.shape} differs from the QSM grid {shape} "
                                 f"({exc}); {hint}") from None
    from .io.grid import resample_masks

    return resample_masks(masks, mask_affine, shape, affine)


_WORKER_EXTRACTOR = None


def _init_worker(params_path, single_thread: bool = False):
    global _WORKER_EXTRACTOR
    if single_thread:  # one process per core: ITK's own threads would only compete for the same cores
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    _WORKER_EXTRACTOR = make_extractor(params_path)


@dataclass(frozen=True)
class ReadingFiles:
    """One reading as feature extraction needs it: who read which case, and its QSM and segmentation files.

    Plain strings and an int, so it pickles to worker processes.
    """

    case_id: str
    lesion_type: str
    observer: str
    reading: int
    qsm_path: str
    segmentation_path: str

    @classmethod
    def of(cls, r) -> "ReadingFiles":
        """Copy of any object with these attributes (e.g. a study store's reading)."""
        return cls(str(r.case_id), str(r.lesion_type), str(r.observer), int(r.reading), str(r.qsm_path),
                   str(r.segmentation_path))


def features_for_reading(reading, extractor=None) -> list[dict]:
    """Long-table rows for every lesion segment of one reading (CSF-referenced χ).

    Parameters
    ----------
    reading : object
        With attributes ``qsm_path``, ``segmentation_path``, ``case_id``, ``lesion_type``, ``observer``,
        ``reading``.
    extractor : optional
        From :func:`make_extractor`; default the worker's.

    Raises
    ------
    RadiomicsError
        The segmentation is not on the QSM's lattice, its CSF or a lesion segment is missing or empty
        (the message names case, observer and reading).
    """
    from .io import load_volume
    from .segio import read_seg_nrrd

    extractor = extractor or _WORKER_EXTRACTOR
    where = f"case {reading.case_id}, observer {reading.observer}, reading {reading.reading}"
    qsm, affine = load_volume(reading.qsm_path)
    try:
        seg = read_seg_nrrd(reading.segmentation_path)
    except InputError as exc:
        raise RadiomicsError(f"{where}: {exc}") from None
    masks = _grid_masks(seg.masks, seg.affine_ras, qsm.shape, affine, None, f"{where} ({reading.segmentation_path})")
    chi_ref = reference_to_csf(qsm, masks.get("csf"), where=f"{where} ({reading.segmentation_path})")
    lesions = sorted(k for k in masks if k.startswith("lesion_"))
    if not lesions:
        raise RadiomicsError(f"{where}: the segmentation has no lesion segment ({reading.segmentation_path})")
    meta = dict(case_id=reading.case_id, observer=reading.observer, reading=int(reading.reading))
    rows = []
    for seg_id in lesions:
        roi = masks[seg_id]
        if not roi.any():
            raise RadiomicsError(f"{where}: lesion segment {seg_id} is empty ({reading.segmentation_path})")
        feats = roi_features(extractor, chi_ref, roi, affine)
        if feats.note:
            log.warning("%s, %s: %s", where, seg_id, feats.note)
        rows.extend(_roi_rows(meta, seg_id.removeprefix("lesion_"), reading.lesion_type, feats))
    return rows


def _worker(reading):
    return features_for_reading(reading)


def extract_readings(readings, *, params_path=None, progress: ProgressCallback | None = None,
                     workers: int | None = None) -> pd.DataFrame:
    """The long feature table (``FEATURE_COLUMNS``) of every reading, computed in ``workers`` processes.

    Parameters
    ----------
    readings : iterable
        Objects with ``qsm_path``, ``segmentation_path``, ``case_id``, ``lesion_type``, ``observer``,
        ``reading`` (e.g. ``Study.readings()``).
    params_path : path-like, optional
        PyRadiomics parameter file; default ``Resources/QSMRadiomics.yaml``.
    progress : callable, optional
        ``progress(fraction, message)``; returning False cancels.
    workers : int, optional
        Processes; default one per core (at most one per reading). 1 runs in this process.
    """
    readings = list(readings)
    if not readings:
        raise RadiomicsError("there are no finished readings to extract features from")
    workers = max(1, min(workers or os.cpu_count() or 1, len(readings)))
    rows = []
    notify(progress, 0.0, f"radiomics: {len(readings)} readings")
    if workers == 1:
        _init_worker(params_path)
        for i, r in enumerate(readings):
            rows.extend(features_for_reading(r))
            notify(progress, (i + 1) / len(readings), f"radiomics {r.case_id} {r.observer} R{r.reading}")
    else:
        make_extractor(params_path)  # fail early, in this process, on a bad parameter file
        plain = [ReadingFiles.of(r) for r in readings]
        # Small chunks keep both workers busy to the end; readings of one case stay in order.
        chunksize = max(1, len(plain) // (8 * workers))
        pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(params_path, True))
        try:
            for i, part in enumerate(pool.map(_worker, plain, chunksize=chunksize)):
                rows.extend(part)
                notify(progress, (i + 1) / len(plain), f"radiomics {plain[i].case_id} {plain[i].observer} R{plain[i].reading}")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return complete_table(pd.DataFrame(rows, columns=FEATURE_COLUMNS))


def load_image(path) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D image from NIfTI (nibabel) or NRRD/other ITK formats, as ((i, j, k) array, voxel→RAS affine)."""
    from .io import load_volume

    path = Path(path)
    if path.name.endswith((".nii", ".nii.gz")):
        return load_volume(path)
    import SimpleITK as sitk

    from .io.dicom import sitk_to_ras

    if not path.exists():
        raise RadiomicsError(f"{path}: file not found")
    try:
        return sitk_to_ras(sitk.ReadImage(str(path)))
    except RuntimeError as exc:
        raise RadiomicsError(f"{path}: not a readable image ({str(exc).splitlines()[0]})") from None


def extract_files(qsm_path, segmentation_paths, *, params_path=None, resample: bool = False,
                  csf_label: int | None = None) -> pd.DataFrame:
    """``qsmrepro extract``: features of every lesion ROI in ``.seg.nrrd`` files or label maps.

    A ``.seg.nrrd`` contributes its ``lesion_*`` segments, referenced to its ``csf`` segment when present,
    with case, observer and reading from its tags. A label map contributes one ROI per non-zero label
    (``label<N>``), referenced to ``csf_label`` when given. A segmentation whose lattice is the QSM's up to
    axis order, flips or a crop (as Slicer saves them) is re-indexed; one on another grid is resampled with
    nearest neighbour when ``resample``, refused otherwise.

    Returns
    -------
    pandas.DataFrame
        The long table (``FEATURE_COLUMNS``), one row per ROI and feature name.
    """
    from .segio import read_seg_nrrd
    from .terminology import TAG_PREFIX

    qsm, affine = load_image(qsm_path)
    extractor = make_extractor(params_path)
    rows = []
    for seg_path in segmentation_paths:
        seg_path = Path(seg_path)
        if seg_path.name.endswith(".seg.nrrd"):
            try:
                seg = read_seg_nrrd(seg_path)
            except InputError as exc:
                raise RadiomicsError(str(exc)) from None
            masks = _grid_masks(seg.masks, seg.affine_ras, qsm.shape, affine, resample, str(seg_path))
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
            values = [int(v) for v in np.unique(labels) if v != 0]
            masks = _grid_masks({v: labels == v for v in values}, lab_affine, qsm.shape, affine, resample,
                                f"{seg_path}: label map")
            meta = dict(case_id=seg_path.name.split(".")[0], observer="", reading=1)
            csf = masks.get(csf_label) if csf_label is not None else None
            if csf_label is not None and csf is None:
                raise RadiomicsError(f"{seg_path}: the CSF label {csf_label} does not occur in the label map")
            rois = {f"label{v}": (m, "") for v, m in masks.items() if v != csf_label}
        if not rois:
            raise RadiomicsError(f"{seg_path}: no lesion ROI found")
        where = f"{seg_path} (case {meta['case_id']}, observer {meta['observer'] or '-'}, reading {meta['reading']})"
        chi = qsm if csf is None else reference_to_csf(qsm, csf, where=where)
        for lesion_id, (roi, lesion_type) in sorted(rois.items()):
            if not roi.any():
                raise RadiomicsError(f"{seg_path}: ROI {lesion_id} is empty (case {meta['case_id']}, observer "
                                     f"{meta['observer'] or '-'}, reading {meta['reading']})")
            feats = roi_features(extractor, chi, roi, affine)
            if feats.note:
                log.warning("%s, %s: %s", seg_path.name, lesion_id, feats.note)
            rows.extend(_roi_rows(meta, lesion_id, lesion_type, feats))
    return complete_table(pd.DataFrame(rows, columns=FEATURE_COLUMNS))
