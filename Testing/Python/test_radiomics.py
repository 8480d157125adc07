"""Radiomics: PyRadiomics' own baseline for brain1, the study's 107 features, first-order values computed by
hand, CSF referencing, grids, degenerate ROIs and the ``qsmrepro extract`` command."""

import ast
import logging
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

# Every test here runs PyRadiomics. It has no build for Python >= 3.12 (inside 3D Slicer it comes from the
# SlicerRadiomics extension), so the Python 3.12 environment that stands in for Slicer skips this file.
pytest.importorskip("radiomics", reason="PyRadiomics is not installed (no build for Python >= 3.12; inside "
                                        "3D Slicer it comes from the SlicerRadiomics extension)")

import yaml  # noqa: E402
from scipy import stats  # noqa: E402

from QSMReproducibilityLib.errors import RadiomicsError
from QSMReproducibilityLib.io import save_nifti
from QSMReproducibilityLib.radiomics import (
    MAX_GREY_LEVELS,
    STUDY_FEATURE_COUNTS,
    default_params_path,
    extract_files,
    extract_readings,
    make_extractor,
    roi_features,
)
from QSMReproducibilityLib.segio import write_seg_nrrd
from QSMReproducibilityLib.terminology import csf_segment, lesion_segment, reading_tags

from cli_driver import qsmrepro

VOXEL = (0.72, 0.72, 2.0)
AFFINE = np.diag([*VOXEL, 1.0])
BIN_WIDTH_PPM = 0.025  # Resources/QSMRadiomics.yaml
REPO = Path(__file__).resolve().parents[2]
SDIST_NAME = "pyradiomics-3.0.1.tar.gz"


@pytest.fixture()
def tiny_case(tmp_path):
    rng = np.random.default_rng(7)
    qsm = np.zeros((14, 12, 6), np.float32)
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


def _write_reading(path, masks, affine, *, case_id="H007", observer="O1", reading=2):
    tags = reading_tags(observer=observer, reading=reading, case_id=case_id, session_uid="s-1", status="finished")
    specs = [lesion_segment(k.removeprefix("lesion_"), "hematoma", tags) for k in masks if k.startswith("lesion_")]
    write_seg_nrrd(path, masks, affine, specs + [csf_segment(tags)])
    return path


# --------------------------------------------------------------------------------------------------------
# PyRadiomics' published baseline (data/ of its 3.0.1 sdist, fetched by `make test`)


def _sdist() -> Path | None:
    for folder in (Path(sys.prefix) / "pyradiomics-sdist", REPO / ".venv" / "pyradiomics-sdist"):
        if (folder / SDIST_NAME).is_file():
            return folder / SDIST_NAME
    return None


@pytest.fixture(scope="module")
def pyradiomics_data(tmp_path_factory):
    sdist = _sdist()
    if sdist is None:
        pytest.skip(f"PyRadiomics' sdist {SDIST_NAME} is absent from <venv>/pyradiomics-sdist; `make test` "
                    "downloads it (pip download --no-binary :all: pyradiomics==3.0.1)")
    out = tmp_path_factory.mktemp("pyradiomics")
    with tarfile.open(sdist) as tar:
        wanted = [m for m in tar.getmembers()
                  if m.isfile() and (m.name.endswith(("data/brain1_image.nrrd", "data/brain1_label.nrrd"))
                                     or "/data/baseline/baseline_" in m.name)]
        tar.extractall(out, members=wanted, filter="data")
    return next(out.glob("*/data"))


def _baseline(data: Path, case: str):
    """The baseline values of one test case and the settings and image types they were computed with."""
    values, settings, image_types, hashes = {}, [], [], set()
    for csv in sorted((data / "baseline").glob("baseline_*.csv")):
        table = pd.read_csv(csv, index_col=0)
        if case not in table.columns:
            continue
        column = table[case]
        settings.append(ast.literal_eval(column["diagnostics_Configuration_Settings"]))
        image_types.append(ast.literal_eval(column["diagnostics_Configuration_EnabledImageTypes"]))
        hashes.add(column["diagnostics_Image-original_Hash"])
        values.update({k: float(v) for k, v in column.items() if k.startswith("original_")})
    assert all(s == settings[0] for s in settings) and all(t == image_types[0] for t in image_types)
    return values, settings[0], image_types[0], hashes


def _params_file(path, settings, image_types, classes):
    path.write_text(yaml.safe_dump({"imageType": image_types, "featureClass": {c: [] for c in classes},
                                    "setting": settings}))
    return path


def test_pyradiomics_baseline_brain1_through_extract_files(pyradiomics_data, tmp_path):
    """All 107 values of PyRadiomics' baseline for brain1, with the settings the baseline records."""
    import SimpleITK as sitk

    expected, settings, image_types, hashes = _baseline(pyradiomics_data, "brain1")
    assert hashes == {sitk.Hash(sitk.ReadImage(str(pyradiomics_data / "brain1_image.nrrd")))}
    classes = sorted({name.split("_")[1] for name in expected})
    params = _params_file(tmp_path / "baseline.yaml", settings, image_types, classes)
    table = extract_files(pyradiomics_data / "brain1_image.nrrd", [pyradiomics_data / "brain1_label.nrrd"],
                          params_path=params)
    got = _features(table, f"label{settings['label']}")
    assert len(expected) == 107 and set(expected) == {f for f in got if f.startswith("original_")}
    mismatched = {name: (got[name], value) for name, value in expected.items()
                  if got[name] != pytest.approx(value, rel=1e-3, abs=1e-12)}
    assert not mismatched


def test_pyradiomics_baseline_brain1_resampled(pyradiomics_data, tmp_path):
    """The resampling path (resampledPixelSpacing, B-spline) against the baseline's brain1_resampling.

    That baseline was computed with SimpleITK 0.9.1, whose B-spline resampling differs from today's by up
    to 0.3 % on intensity percentiles (PyRadiomics' own test accepts 3 %); 1 % here.
    """
    expected, settings, image_types, _ = _baseline(pyradiomics_data, "brain1_resampling")
    assert settings["resampledPixelSpacing"] == [2, 2, 2]
    classes = sorted({name.split("_")[1] for name in expected})
    params = _params_file(tmp_path / "resampling.yaml", settings, image_types, classes)
    table = extract_files(pyradiomics_data / "brain1_image.nrrd", [pyradiomics_data / "brain1_label.nrrd"],
                          params_path=params)
    got = _features(table, "label1")
    assert len(expected) == 107
    mismatched = {name: (got[name], value) for name, value in expected.items()
                  if got[name] != pytest.approx(value, rel=1e-2, abs=1e-12)}
    assert not mismatched


@pytest.mark.parametrize("resampled_mm", [None, [0.36, 0.36, 1.0], [1.08, 1.08, 2.0]])
def test_cropping_to_the_roi_changes_no_value(resampled_mm, tmp_path):
    """PyRadiomics on the whole volume and on the ROI's box plus margin give the same 107 values, also when
    resampling (whose grid is phased on the image's first voxel: 1.08 mm steps of 1.5 voxels)."""
    rng = np.random.default_rng(3)
    chi = rng.normal(0.0, 0.08, (96, 80, 30))
    roi = np.zeros(chi.shape, bool)
    roi[40:45, 30:35, 12:14] = True  # 50 voxels
    chi[roi] += 0.25
    settings = yaml.safe_load(default_params_path().read_text())
    settings["setting"]["resampledPixelSpacing"] = resampled_mm
    extractor = make_extractor(_params_file(tmp_path / "p.yaml", settings["setting"], settings["imageType"],
                                            list(settings["featureClass"])))
    cropped = roi_features(extractor, chi, roi, AFFINE, crop=True).values
    whole = roi_features(extractor, chi, roi, AFFINE, crop=False).values
    assert len(whole) == 109
    different = {k: (cropped[k], v) for k, v in whole.items() if cropped[k] != pytest.approx(v, rel=1e-9, abs=1e-12)}
    assert not different


# --------------------------------------------------------------------------------------------------------
# The study's features, computed by hand


def test_the_study_107_features_by_class(tiny_case):
    _, _, _, qsm_path, labels = tiny_case
    feats = _features(extract_files(qsm_path, [labels]), "label1")
    radiomic = [f for f in feats if f.startswith("original_")]
    assert len(radiomic) == 107
    counts = {}
    for f in radiomic:
        counts[f.split("_")[1]] = counts.get(f.split("_")[1], 0) + 1
    assert counts == STUDY_FEATURE_COUNTS


def test_parameter_file_states_the_bin_width_in_ppm():
    extractor = make_extractor()
    assert extractor.settings["binWidth"] == BIN_WIDTH_PPM
    assert extractor.settings["resampledPixelSpacing"] is None


def test_first_order_values_match_hand_computation(tiny_case):
    """Formulas of PyRadiomics' documentation (first-order features), evaluated with numpy/scipy."""
    qsm, roi, _, qsm_path, labels = tiny_case
    feats = _features(extract_files(qsm_path, [labels]), "label1")
    x = qsm[roi].astype(np.float64)
    voxel_volume = np.prod(VOXEL)
    p10, p90 = np.percentile(x, [10, 90])
    band = x[(x >= p10) & (x <= p90)]
    width = BIN_WIDTH_PPM
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
    seg = _write_reading(tmp_path / "O1_r2.seg.nrrd", {"lesion_right": roi, "csf": csf}, AFFINE)
    table = extract_files(qsm_path, [seg])
    row = table[(table.feature == "qsm_mean")].iloc[0]
    assert (row.case_id, row.observer, row.reading, row.lesion_id, row.lesion_type) == ("H007", "O1", 2, "right", "hematoma")
    assert row.value == pytest.approx(qsm[roi].mean() - qsm[csf].mean(), rel=1e-5)
    median = table[table.feature == "qsm_median"].value.iloc[0]
    assert median == pytest.approx(np.median(qsm[roi]) - qsm[csf].mean(), rel=1e-5)


# --------------------------------------------------------------------------------------------------------
# Grids


def test_segmentation_on_another_grid_is_refused_unless_resampling(tiny_case, tmp_path):
    _, roi, _, qsm_path, _ = tiny_case
    half_voxel = AFFINE.copy()
    half_voxel[:3, 3] += np.array(VOXEL) / 2
    other = save_nifti(tmp_path / "shifted.nii.gz", roi.astype(np.uint8), half_voxel)
    with pytest.raises(RadiomicsError, match="differs from the QSM grid"):
        extract_files(qsm_path, [other])
    # The same lesion on a grid twice as fine in-plane: voxel centres of the QSM fall on even fine voxels.
    fine = np.repeat(np.repeat(roi, 2, axis=0), 2, axis=1).astype(np.uint8)
    fine_affine = np.diag([VOXEL[0] / 2, VOXEL[1] / 2, VOXEL[2], 1.0])
    fine_path = save_nifti(tmp_path / "fine.nii.gz", fine, fine_affine)
    with pytest.raises(RadiomicsError, match="pass --resample"):
        extract_files(qsm_path, [fine_path])
    table = extract_files(qsm_path, [fine_path], resample=True)
    assert table[table.feature == "original_shape_VoxelVolume"].value.iloc[0] == pytest.approx(roi.sum() * np.prod(VOXEL))


def test_seg_nrrd_with_flipped_and_permuted_axes_is_reindexed(tiny_case, tmp_path):
    """A .seg.nrrd on the QSM's lattice with axes swapped and one reversed, as Slicer may save it."""
    qsm, roi, csf, qsm_path, _ = tiny_case
    nj = roi.shape[1]
    # file index (a, b, c) is QSM voxel (b, nj - 1 - a, c)
    file_from_qsm = lambda m: np.transpose(m, (1, 0, 2))[::-1]  # noqa: E731
    to_qsm = np.array([[0, 1, 0, 0], [-1, 0, 0, nj - 1], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    seg = _write_reading(tmp_path / "flipped.seg.nrrd",
                         {"lesion_right": file_from_qsm(roi), "csf": file_from_qsm(csf)}, AFFINE @ to_qsm)
    straight = _write_reading(tmp_path / "straight.seg.nrrd", {"lesion_right": roi, "csf": csf}, AFFINE)
    flipped_table = extract_files(qsm_path, [seg])
    feats = _features(flipped_table, "right")
    assert feats["qsm_mean"] == pytest.approx(qsm[roi].mean() - qsm[csf].mean(), rel=1e-5)
    assert feats["original_firstorder_Maximum"] == pytest.approx(qsm[roi].max() - qsm[csf].mean(), rel=1e-5)
    assert feats["original_shape_VoxelVolume"] == pytest.approx(roi.sum() * np.prod(VOXEL), rel=1e-6)
    reference = _features(extract_files(qsm_path, [straight]), "right")
    assert feats == pytest.approx(reference, rel=1e-9)

    reading = SimpleNamespace(case_id="H007", lesion_type="hematoma", observer="O1", reading=2,
                              qsm_path=qsm_path, segmentation_path=seg)
    study_feats = _features(extract_readings([reading], workers=1), "right")
    assert study_feats == pytest.approx(reference, rel=1e-9)


# --------------------------------------------------------------------------------------------------------
# Degenerate and empty ROIs, grey levels


def test_degenerate_rois_give_every_name_with_reasons_for_nan(tiny_case, tmp_path, caplog):
    qsm, _, csf, _, _ = tiny_case
    qsm = qsm.copy()
    single = np.zeros(qsm.shape, bool)
    single[9, 9, 4] = True
    constant = np.zeros(qsm.shape, bool)
    constant[8:11, 2:5, 2:5] = True  # 27 voxels of one value
    qsm[constant] = 0.3
    qsm_path = save_nifti(tmp_path / "qsm_flat.nii.gz", qsm, AFFINE)
    seg = _write_reading(tmp_path / "degenerate.seg.nrrd",
                         {"lesion_right": single, "lesion_left": constant, "csf": csf}, AFFINE)
    reading = SimpleNamespace(case_id="H007", lesion_type="hematoma", observer="O1", reading=2,
                              qsm_path=qsm_path, segmentation_path=seg)
    csf_mean = float(qsm[csf].mean())
    with caplog.at_level(logging.WARNING, logger="QSMReproducibilityLib.radiomics"):
        tables = [extract_files(qsm_path, [seg]), extract_readings([reading], workers=1)]
    for table in tables:
        assert table.groupby("lesion_id").feature.nunique().to_dict() == {"right": 109, "left": 109}
        assert not table.duplicated(["lesion_id", "feature"]).any()
        nan = table[table.value.isna()]
        assert (nan.reason.str.len() > 0).all()
        assert (table[table.value.notna()].reason == "").all()

        one = _features(table, "right")
        assert one["qsm_mean"] == pytest.approx(qsm[single][0] - csf_mean, rel=1e-5)
        assert one["qsm_median"] == pytest.approx(qsm[single][0] - csf_mean, rel=1e-5)
        radiomic = table[(table.lesion_id == "right") & table.feature.str.startswith("original_")]
        assert len(radiomic) == 107 and radiomic.value.isna().all()
        assert radiomic.reason.str.contains("single voxel").all()

        flat = _features(table, "left")
        assert flat["qsm_mean"] == pytest.approx(0.3 - csf_mean, rel=1e-5)
        assert flat["original_firstorder_Range"] == 0.0
        assert flat["original_firstorder_Variance"] == pytest.approx(0.0, abs=1e-12)
        assert flat["original_firstorder_Uniformity"] == 1.0
        assert flat["original_firstorder_Entropy"] == pytest.approx(0.0, abs=1e-12)
        assert flat["original_shape_VoxelVolume"] == pytest.approx(27 * np.prod(VOXEL), rel=1e-6)
        notes = table[(table.lesion_id == "left")].set_index("feature").note
        assert "1 grey level" in notes["original_glcm_Contrast"] and "1 grey level" in notes["original_firstorder_Entropy"]
        assert notes["original_shape_VoxelVolume"] == notes["original_firstorder_Mean"] == notes["qsm_mean"] == ""
    warned = [r.getMessage() for r in caplog.records if "grey level" in r.getMessage()]
    assert any("case H007, observer O1, reading 2" in m and "lesion_left" in m for m in warned)


def test_a_failing_pyradiomics_feature_is_nan_with_pyradiomics_message(tiny_case, monkeypatch):
    from radiomics import glcm

    def getContrastFeatureValue(self):  # noqa: N802 - PyRadiomics' method name
        raise ZeroDivisionError("contrast of nothing")

    monkeypatch.setattr(glcm.RadiomicsGLCM, "getContrastFeatureValue", getContrastFeatureValue)
    _, _, _, qsm_path, labels = tiny_case
    table = extract_files(qsm_path, [labels]).set_index("feature")
    assert np.isnan(table.loc["original_glcm_Contrast", "value"])
    assert "ZeroDivisionError: contrast of nothing" in table.loc["original_glcm_Contrast", "reason"]
    assert table.value.notna().sum() == 108 and (table.loc["original_ngtdm_Contrast", "reason"] == "")


def test_filtered_image_types_give_every_roi_the_same_names(tiny_case, tmp_path):
    """Names of filtered images (here LoG) are known only once an ROI yields them: the single-voxel ROI,
    for which PyRadiomics yields nothing, still gets a row for each, NaN with its reason."""
    qsm, roi, _, qsm_path, _ = tiny_case
    labels = roi.astype(np.uint8)
    labels[12, 10, 5] = 2  # a single voxel
    labels_path = save_nifti(tmp_path / "two.nii.gz", labels, AFFINE)
    params = _params_file(tmp_path / "log.yaml", {"binWidth": BIN_WIDTH_PPM, "label": 1},
                          {"Original": {}, "LoG": {"sigma": [1.0]}}, ["firstorder"])
    table = extract_files(qsm_path, [labels_path], params_path=params)
    names = table.groupby("lesion_id").feature.apply(frozenset)
    assert names["label1"] == names["label2"] and len(names["label1"]) == 2 + 2 * 18
    log_rows = table[table.feature.str.startswith("log-sigma-1-0-mm-3D_firstorder_")]
    assert log_rows[log_rows.lesion_id == "label1"].value.notna().all()
    single = log_rows[log_rows.lesion_id == "label2"]
    assert single.value.isna().all() and (single.reason.str.len() > 0).all()
    feats = _features(table, "label1")
    assert feats["original_firstorder_Mean"] == pytest.approx(qsm[roi].mean(), rel=1e-5)


def test_study_reading_on_another_grid_is_refused(tiny_case, tmp_path):
    _, roi, csf, qsm_path, _ = tiny_case
    shifted = AFFINE.copy()
    shifted[:3, 3] += 0.3  # a sub-voxel shift: no lattice match
    seg = _write_reading(tmp_path / "shifted.seg.nrrd", {"lesion_right": roi, "csf": csf}, shifted)
    reading = SimpleNamespace(case_id="H007", lesion_type="hematoma", observer="O1", reading=2,
                              qsm_path=qsm_path, segmentation_path=seg)
    with pytest.raises(RadiomicsError, match=r"case H007, observer O1, reading 2.*differs from the QSM grid"):
        extract_readings([reading], workers=1)


def test_grey_level_warning_thresholds(tiny_case, tmp_path, caplog):
    qsm, roi, _, _, labels = tiny_case
    wide = qsm.copy()
    wide[roi] = np.linspace(0.0, 2.0, roi.sum())  # 2 ppm / 0.025 ppm = 80 levels
    wide_path = save_nifti(tmp_path / "wide.nii.gz", wide, AFFINE)
    with caplog.at_level(logging.WARNING, logger="QSMReproducibilityLib.radiomics"):
        table = extract_files(wide_path, [labels])
    assert any(f"{int(2.0 / BIN_WIDTH_PPM) + 1} grey level" in r.getMessage() for r in caplog.records)
    assert 81 > MAX_GREY_LEVELS and table.note.str.contains("81 grey level").any()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="QSMReproducibilityLib.radiomics"):
        table = extract_files(tiny_case[3], [labels])  # 0.15-0.45 ppm: about 12 levels
    assert not [r for r in caplog.records if "grey level" in r.getMessage()]
    assert (table.note == "").all()


def test_empty_segment_names_case_observer_and_reading(tiny_case, tmp_path):
    _, roi, csf, qsm_path, _ = tiny_case
    seg = _write_reading(tmp_path / "empty.seg.nrrd",
                         {"lesion_right": roi, "lesion_left": np.zeros_like(roi), "csf": csf}, AFFINE,
                         case_id="C012", observer="O2", reading=1)
    with pytest.raises(RadiomicsError, match=r"lesion_left|ROI left") as files_error:
        extract_files(qsm_path, [seg])
    reading = SimpleNamespace(case_id="C012", lesion_type="calcification", observer="O2", reading=1,
                              qsm_path=qsm_path, segmentation_path=seg)
    with pytest.raises(RadiomicsError, match="empty") as readings_error:
        extract_readings([reading], workers=1)
    for error in (files_error, readings_error):
        message = str(error.value)
        assert "C012" in message and "observer O2" in message and "reading 1" in message and "empty" in message


# --------------------------------------------------------------------------------------------------------
# qsmrepro extract


def test_cli_extract_writes_csv_and_xlsx(tiny_case, tmp_path):
    qsm, roi, csf, qsm_path, _ = tiny_case
    seg = _write_reading(tmp_path / "O1_r2.seg.nrrd", {"lesion_right": roi, "csf": csf}, AFFINE)
    done = qsmrepro("extract", qsm_path, seg, "-o", tmp_path / "features.csv", timeout=300)
    assert done.returncode == 0, done.stderr
    csv = pd.read_csv(tmp_path / "features.csv")
    done = qsmrepro("extract", qsm_path, seg, "-o", tmp_path / "features.xlsx", timeout=300)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "features.xlsx", "rb") as f:
        assert f.read(2) == b"PK"  # a zip container, not text
    xlsx = pd.read_excel(tmp_path / "features.xlsx", engine="openpyxl")
    for table in (csv, xlsx):
        assert list(table.columns[:7]) == ["case_id", "lesion_id", "lesion_type", "observer", "reading", "feature",
                                           "value"]
        assert len(table) == 109
        values = dict(zip(table.feature, table.value))
        assert values["qsm_mean"] == pytest.approx(qsm[roi].mean() - qsm[csf].mean(), rel=1e-5)
        assert values["original_shape_VoxelVolume"] == pytest.approx(roi.sum() * np.prod(VOXEL), rel=1e-6)


def test_cli_extract_error_is_one_line_and_writes_nothing(tiny_case, tmp_path):
    _, roi, csf, qsm_path, _ = tiny_case
    seg = _write_reading(tmp_path / "empty.seg.nrrd", {"lesion_right": np.zeros_like(roi), "csf": csf}, AFFINE)
    for output in ("features.csv", "features.xlsx"):
        done = qsmrepro("extract", qsm_path, seg, "-o", tmp_path / output, timeout=300)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("qsmrepro: error:") and "empty" in lines[0]
        assert not list(tmp_path.glob("features*"))


def test_an_empty_csf_segment_stops_both_extraction_paths_with_one_error_type(tiny_case, tmp_path):
    """χ is referenced to the reading's CSF; without CSF voxels there is no reference, and both the command
    (extract_files) and the study path (features_for_reading) refuse the reading the same way."""
    from QSMReproducibilityLib.radiomics import ReadingFiles, features_for_reading

    _, roi, csf, qsm_path, _ = tiny_case
    seg = _write_reading(tmp_path / "nocsf.seg.nrrd", {"lesion_right": roi, "csf": np.zeros_like(csf)}, AFFINE,
                         case_id="H011", observer="O2", reading=1)
    with pytest.raises(RadiomicsError, match=r"nocsf\.seg\.nrrd \(case H011, observer O2, reading 1\): the CSF "
                                             r"segment is missing or empty"):
        extract_files(qsm_path, [seg])
    reading = ReadingFiles(case_id="H011", lesion_type="hematoma", observer="O2", reading=1,
                           qsm_path=str(qsm_path), segmentation_path=str(seg))
    with pytest.raises(RadiomicsError, match=r"case H011, observer O2, reading 1 \(.*nocsf\.seg\.nrrd\): the CSF "
                                             r"segment is missing or empty"):
        features_for_reading(reading, make_extractor())
