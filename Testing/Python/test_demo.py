"""`qsmrepro demo` on the default 61-case cohort, through every stage, and the study's findings."""

import pandas as pd
import pytest
from openpyxl import load_workbook

from QSMReproducibilityLib.readings import Study

from cli_driver import qsmrepro


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    pytest.importorskip("radiomics", reason="the demo extracts PyRadiomics features (no build for Python >= 3.12; "
                                            "inside 3D Slicer it comes from the SlicerRadiomics extension)")
    out = tmp_path_factory.mktemp("demo")
    proc = qsmrepro("demo", "-o", out, timeout=900)
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
    # The report states the reconstruction the demo used: the study's chain, with references.
    html = (demo_dir / "report.html").read_text(encoding="utf-8")
    assert "V-SHARP (Wu et al. 2012" in html and "STAR-QSM" in html and "BET" in html


@pytest.mark.slow
def test_demo_study_store_is_real_and_consistent(demo_dir):
    study = Study.open(demo_dir / "study")
    assert len(study.cases()) == 61
    assert sum(case.lesion_type == "hematoma" for case in study.cases()) == 36
    assert len(study.readings()) == 61 * 2 * 2
    assert study.verify() == []
    proc = qsmrepro("study", "verify", demo_dir / "study")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_demo_reproduces_the_sign_of_lesion_susceptibility(demo_dir):
    """Haematomas paramagnetic, calcifications diamagnetic after CSF referencing (study Table 1)."""
    features = pd.read_csv(demo_dir / "features.csv")
    means = features[features.feature == "qsm_mean"].groupby("lesion_type").value.mean()
    assert means["hematoma"] > 0.05
    assert means["calcification"] < -0.05


@pytest.mark.slow
def test_demo_agreement_is_higher_for_calcifications_than_haematomas(demo_dir):
    """The study's Table 2: ICC of mean QSM higher in calcifications in every comparison."""
    table2 = pd.read_csv(demo_dir / "table2_qsm_agreement.csv")
    mean_qsm = table2[table2.feature == "qsm_mean"].pivot(index="comparison", columns="lesion_type", values="icc")
    assert len(mean_qsm) == 5
    assert (mean_qsm["calcification"] > mean_qsm["hematoma"]).all(), mean_qsm


@pytest.mark.slow
def test_demo_tables_match_the_papers(demo_dir):
    """The demo's Tables 1-3 against Park et al. 2023 (targets in paper_tables.py): Table 1 within 0.05 ppm,
    Table 2 mostly inside the paper's 95 % CIs, and calcifications with more stable features than haematomas."""
    from paper_tables import compare_with_paper

    lines, met = compare_with_paper(pd.read_csv(demo_dir / "table1_qsm_values.csv"),
                                    pd.read_csv(demo_dir / "table2_qsm_agreement.csv"),
                                    pd.read_csv(demo_dir / "table3_stable_features.csv"))
    assert all(met.values()), "\n".join(lines)
