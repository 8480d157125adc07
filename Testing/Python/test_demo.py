"""The walking skeleton: `qsmrepro demo` through every stage on a small synthetic cohort."""

import subprocess
import sys

import pandas as pd
import pytest
from openpyxl import load_workbook

from QSMReproducibilityLib.readings import Study


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "QSMReproducibilityLib.cli", "demo", "-o", str(out), "--cases", "5", "--seed", "3"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Report: {out / 'report.html'}" in proc.stdout
    return out


@pytest.mark.slow
def test_demo_writes_the_contracted_outputs(demo_dir):
    for name in ("report.html", "features.csv", "agreement.xlsx"):
        assert (demo_dir / name).stat().st_size > 1000, name
    features = pd.read_csv(demo_dir / "features.csv")
    assert list(features.columns[:7]) == ["case_id", "lesion_id", "lesion_type", "observer", "reading", "feature", "value"]
    assert set(features.lesion_type) == {"hematoma", "calcification"}
    assert set(features.observer) == {"O1", "O2"} and set(features.reading) == {1, 2}
    # 107 PyRadiomics features + CSF-referenced mean and median for every lesion and reading
    per_roi = features.groupby(["case_id", "lesion_id", "observer", "reading"]).feature.nunique()
    assert (per_roi == 109).all()
    sheets = load_workbook(demo_dir / "agreement.xlsx", read_only=True).sheetnames
    assert len(sheets) >= 3


@pytest.mark.slow
def test_demo_study_store_is_real_and_consistent(demo_dir):
    study = Study.open(demo_dir / "study")
    assert len(study.cases()) == 5
    assert len(study.readings()) == 5 * 2 * 2
    assert study.verify() == []
    proc = subprocess.run([sys.executable, "-m", "QSMReproducibilityLib.cli", "study", "verify", str(demo_dir / "study")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_demo_reproduces_the_sign_of_lesion_susceptibility(demo_dir):
    """Haematomas paramagnetic, calcifications diamagnetic after CSF referencing (study Table 1)."""
    features = pd.read_csv(demo_dir / "features.csv")
    means = features[features.feature == "qsm_mean"].groupby("lesion_type").value.mean()
    assert means["hematoma"] > 0.05
    assert means["calcification"] < -0.05


@pytest.mark.slow
def test_a_site_reading_through_the_cli(tmp_path):
    """init → add-case from raw GRE (real reconstruction) → start-reading → finish-reading → export."""
    import json

    import numpy as np

    from QSMReproducibilityLib.io import load_volume
    from QSMReproducibilityLib.phantom import CSF, LESION_LABEL, simulate_case
    from QSMReproducibilityLib.segio import csf_segment, lesion_segment, reading_tags, write_seg_nrrd

    case = simulate_case("H100", "hematoma", seed=11, out_dir=tmp_path / "raw", shape=(96, 96, 24))
    study = tmp_path / "study"

    def qsmrepro(*args):
        proc = subprocess.run([sys.executable, "-m", "QSMReproducibilityLib.cli", *map(str, args)],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    qsmrepro("study", "init", study)
    qsmrepro("study", "add-case", study, case.anat_dir, "--case-id", "H100", "--lesion-type", "hematoma")
    qsmrepro("study", "add-observer", study, "O1")
    session = json.loads(qsmrepro("study", "start-reading", study, "--observer", "O1", "--json"))
    assert session["case_id"] == "H100" and session["reading"] == 1

    labels, affine = load_volume(case.labels_path)
    tags = reading_tags(observer="O1", reading=1, case_id="H100", session_uid=session["session_uid"], status="started")
    side = case.sides[0]
    seg = tmp_path / "drawn.seg.nrrd"
    write_seg_nrrd(seg, {f"lesion_{side}": labels == LESION_LABEL[side], "csf": labels == CSF}, affine,
                   [lesion_segment(side, "hematoma", tags), csf_segment(tags)])
    qsmrepro("study", "finish-reading", study, "--observer", "O1", "--case", "H100", "--segmentation", seg)
    qsmrepro("study", "export", study, "-o", tmp_path / "features.csv")
    features = pd.read_csv(tmp_path / "features.csv")
    mean = features[features.feature == "qsm_mean"].value.iloc[0]
    # The true lesion χ relative to CSF, recovered from raw GRE within 25 % with a perfect segmentation.
    assert mean == pytest.approx(case.lesion_chi_ppm[side], rel=0.25)
    assert np.isfinite(features.value).sum() >= 100
