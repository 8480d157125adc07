"""Radiomics: the study's 107 features, first-order values computed by hand, CSF referencing."""

import numpy as np
import pytest
from scipy import stats

from QSMReproducibilityLib.errors import RadiomicsError
from QSMReproducibilityLib.io import save_nifti
from QSMReproducibilityLib.radiomics import STUDY_FEATURE_COUNTS, extract_files
from QSMReproducibilityLib.segio import csf_segment, lesion_segment, reading_tags, write_seg_nrrd

VOXEL = (0.72, 0.72, 2.0)
AFFINE = np.diag([*VOXEL, 1.0])


@pytest.fixture()
def tiny_case(tmp_path):
    rng = np.random.default_rng(7)
    qsm = np.zeros((12, 12, 6), np.float32)
    roi = np.zeros(qsm.shape, bool)
    roi[4:8, 4:7, 2:4] = True  # 24 voxels, a vessel-wall-sized lesion
    qsm[roi] = rng.uniform(0.15, 0.45, roi.sum())
    csf = np.zeros(qsm.shape, bool)
    csf[0:3, 0:3, 0:2] = True
    qsm[csf] = 0.05 + rng.normal(0, 0.01, csf.sum())
    qsm_path = save_nifti(tmp_path / "qsm.nii.gz", qsm, AFFINE)
    labels = save_nifti(tmp_path / "lesion.nii.gz", roi.astype(np.uint8), AFFINE)
    return qsm, roi, csf, qsm_path, labels


def _features(table, lesion_id):
    sub = table[table.lesion_id == lesion_id]
    return dict(zip(sub.feature, sub.value))


def test_the_study_107_features_by_class(tiny_case):
    _, _, _, qsm_path, labels = tiny_case
    feats = _features(extract_files(qsm_path, [labels]), "label1")
    radiomic = [f for f in feats if f.startswith("original_")]
    assert len(radiomic) == 107
    counts = {}
    for f in radiomic:
        counts[f.split("_")[1]] = counts.get(f.split("_")[1], 0) + 1
    assert counts == STUDY_FEATURE_COUNTS


def test_first_order_values_match_hand_computation(tiny_case):
    """Formulas of PyRadiomics' documentation (first-order features), evaluated with numpy/scipy."""
    qsm, roi, _, qsm_path, labels = tiny_case
    feats = _features(extract_files(qsm_path, [labels]), "label1")
    x = qsm[roi].astype(np.float64)
    voxel_volume = np.prod(VOXEL)
    p10, p90 = np.percentile(x, [10, 90])
    band = x[(x >= p10) & (x <= p90)]
    width = 0.025
    bins = np.floor(x / width) - np.floor(x.min() / width) + 1
    _, counts = np.unique(bins, return_counts=True)
    p = counts / counts.sum()
    expected = {
        "Mean": x.mean(),
        "Median": np.median(x),
        "Minimum": x.min(),
        "Maximum": x.max(),
        "Range": np.ptp(x),
        "10Percentile": p10,
        "90Percentile": p90,
        "InterquartileRange": np.percentile(x, 75) - np.percentile(x, 25),
        "Energy": np.sum(x**2),
        "TotalEnergy": voxel_volume * np.sum(x**2),
        "RootMeanSquared": np.sqrt(np.mean(x**2)),
        "Variance": x.var(),
        "MeanAbsoluteDeviation": np.mean(np.abs(x - x.mean())),
        "RobustMeanAbsoluteDeviation": np.mean(np.abs(band - band.mean())),
        "Skewness": stats.skew(x),
        "Kurtosis": stats.kurtosis(x, fisher=False),
        "Uniformity": np.sum(p**2),
        "Entropy": -np.sum(p * np.log2(p)),
    }
    for name, value in expected.items():
        assert feats[f"original_firstorder_{name}"] == pytest.approx(value, rel=1e-4, abs=1e-9), name
    assert feats["original_shape_VoxelVolume"] == pytest.approx(roi.sum() * voxel_volume, rel=1e-6)


def test_seg_nrrd_reading_is_referenced_to_its_own_csf(tiny_case, tmp_path):
    qsm, roi, csf, qsm_path, _ = tiny_case
    tags = reading_tags(observer="O1", reading=2, case_id="H007", session_uid="s-1", status="finished")
    seg = tmp_path / "O1_r2.seg.nrrd"
    write_seg_nrrd(seg, {"lesion_right": roi, "csf": csf}, AFFINE,
                   [lesion_segment("right", "hematoma", tags), csf_segment(tags)])
    table = extract_files(qsm_path, [seg])
    row = table[(table.feature == "qsm_mean")].iloc[0]
    assert (row.case_id, row.observer, row.reading, row.lesion_id, row.lesion_type) == ("H007", "O1", 2, "right", "hematoma")
    assert row.value == pytest.approx(qsm[roi].mean() - qsm[csf].mean(), rel=1e-5)
    median = table[table.feature == "qsm_median"].value.iloc[0]
    assert median == pytest.approx(np.median(qsm[roi]) - qsm[csf].mean(), rel=1e-5)


def test_segmentation_on_another_grid_is_refused_unless_resampling(tiny_case, tmp_path):
    _, roi, _, qsm_path, _ = tiny_case
    other = save_nifti(tmp_path / "other.nii.gz", np.pad(roi, 1).astype(np.uint8), AFFINE)
    with pytest.raises(RadiomicsError, match="differs from the QSM grid"):
        extract_files(qsm_path, [other])
    shifted = AFFINE.copy()
    shifted[:3, 3] -= np.array(VOXEL)  # the padded grid starts one voxel earlier: same physical ROI
    other = save_nifti(tmp_path / "other2.nii.gz", np.pad(roi, 1).astype(np.uint8), shifted)
    table = extract_files(qsm_path, [other], resample=True)
    assert table[table.feature == "original_shape_VoxelVolume"].value.iloc[0] == pytest.approx(roi.sum() * np.prod(VOXEL))
