"""The agreement report: files, workbook, CSV contents, the CLI, and the HTML rendered in headless Chromium.

The synthetic study has a known structure: radiomic features ``*_Stable*`` repeat the subject's true value
with 1 % noise (CCC and ICC close to 1 in every comparison), ``*_Noise*`` are independent draws at every
reading (CCC and ICC near 0), one shape feature is constant (not computable) and one reading misses one value.
"""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from QSMReproducibilityLib import agreement as ag
from QSMReproducibilityLib.errors import AgreementError, InputError
from QSMReproducibilityLib.report import CSV_FILES, XLSX_SHEETS, add_cli, write_report

STABLE = ["original_firstorder_StableEnergy", "original_shape_StableVolume", "original_glrlm_StableRuns"]
NOISE = ["original_firstorder_NoiseSkew", "original_glcm_NoiseContrast", "original_glszm_NoiseZones",
         "original_gldm_NoiseDependence", "original_ngtdm_NoiseBusyness"]
CONSTANT = "original_shape_ConstantFlatness"
N_HEMATOMA, N_CALCIFICATION = 12, 9


def synthetic_features(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for lesion_type, n_subjects, mean_ppm in (("hematoma", N_HEMATOMA, 0.28), ("calcification", N_CALCIFICATION,
                                                                                   -0.21)):
        for i in range(n_subjects):
            case = f"{lesion_type[:3]}{i:02d}"
            side = "left" if i % 3 == 0 else "right"
            chi = mean_ppm + 0.08 * rng.normal()
            truth = {f: rng.normal(10, 3) for f in STABLE}
            for observer in ("observer_b", "observer_a"):
                for reading in (1, 2):
                    qsm = chi + 0.01 * rng.normal()
                    values = {"qsm_mean": qsm, "qsm_median": qsm + 0.005 * rng.normal(), CONSTANT: 0.5}
                    values.update({f: v * (1 + 0.01 * rng.normal()) for f, v in truth.items()})
                    values.update({f: rng.normal() for f in NOISE})
                    for feature, value in values.items():
                        rows.append(dict(case_id=case, lesion_id=side, lesion_type=lesion_type, observer=observer,
                                         reading=reading, feature=feature, value=value, reason=""))
    table = pd.DataFrame(rows)
    gone = (table["case_id"] == "hem03") & (table["observer"] == "observer_b") & (table["reading"] == 2) & (
        table["feature"] == "qsm_mean")
    table.loc[gone, ["value", "reason"]] = [np.nan, "segment empty"]
    return table


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    messages = []
    outputs = write_report(synthetic_features(), out, settings={"Cohort": "synthetic test"},
                           progress=lambda f, m: messages.append((f, m)))
    return out, outputs, messages


def test_every_output_file_is_written(written):
    out, outputs, messages = written
    for name in ("report.html", "agreement.xlsx", "figure3_heatmap.png", "bland_altman_hematoma.png",
                 "bland_altman_calcification.png") + CSV_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert outputs["report_html"] == out / "report.html"
    assert outputs["agreement_xlsx"] == out / "agreement.xlsx"
    assert all(path.exists() for path in outputs.values())
    assert messages[-1][0] == 1.0
    fractions = [f for f, _m in messages]
    assert fractions == sorted(fractions)


def test_workbook_has_one_sheet_per_table(written):
    from openpyxl import load_workbook

    out, _outputs, _messages = written
    workbook = load_workbook(out / "agreement.xlsx", read_only=True)
    assert workbook.sheetnames == list(XLSX_SHEETS)
    table3 = pd.read_excel(out / "agreement.xlsx", sheet_name="Table 3 stable features")
    pd.testing.assert_frame_equal(table3, pd.read_csv(out / "table3_stable_features.csv"), check_dtype=False)


def test_tables_show_the_designed_structure(written):
    out, _outputs, _messages = written
    table3 = pd.read_csv(out / "table3_stable_features.csv").set_index(["comparison", "lesion_type"])
    n_radiomic = len(STABLE) + len(NOISE) + 1
    for comparison in [c.name for c in ag.COMPARISONS] + ["All comparisons"]:
        for lesion_type in ("hematoma", "calcification", "both types"):
            row = table3.loc[(comparison, lesion_type)]
            assert row["n_features"] == n_radiomic
            assert row["n_stable"] == len(STABLE)
            assert row["pct_stable"] == pytest.approx(100 * len(STABLE) / n_radiomic)
    features = pd.read_csv(out / "feature_agreement.csv")
    radiomic = features[features["feature_class"] != "qsm"]
    assert set(radiomic.loc[radiomic["stable"], "feature"]) == set(STABLE)
    constant = features[features["feature"] == CONSTANT]
    assert constant["icc"].isna().all() and constant["reason"].str.contains("same value").all()
    table1 = pd.read_csv(out / "table1_qsm_values.csv")
    assert len(table1) == 2 * 2 * 2 * 2           # features x lesion types x observers x readings
    assert set(table1["observer_id"]) == {"observer_a", "observer_b"}
    assert (table1.loc[table1["lesion_type"] == "hematoma", "mean_ppm"] > 0).all()
    assert (table1.loc[table1["lesion_type"] == "calcification", "mean_ppm"] < 0).all()
    table2 = pd.read_csv(out / "table2_qsm_agreement.csv")
    assert len(table2) == 2 * 5 * 2
    dropped = table2[(table2["feature"] == "qsm_mean") & (table2["lesion_type"] == "hematoma")]
    # hem03 lacks O2R2 (observer_b is O2): dropped from O2 intra, 2nd inter and intra and inter only.
    assert dict(zip(dropped["comparison"], dropped["n_dropped"])) == {
        "O1 intra": 0, "O2 intra": 1, "1st inter": 0, "2nd inter": 1, "Intra and inter": 1}
    assert (table2["icc"] > 0.9).all()
    missing = pd.read_csv(out / "missing_readings.csv")
    assert list(missing[["case_id", "observer", "reading", "reasons"]].iloc[0]) == [
        "hem03", "O2", 2, "segment empty"]
    bland = pd.read_csv(out / "bland_altman.csv")
    assert len(bland) == 2 * 2 * 4
    assert (bland["loa_low"] < bland["bias"]).all() and (bland["bias"] < bland["loa_high"]).all()


def test_html_is_self_contained(written):
    out, _outputs, _messages = written
    text = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://", text)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", text)
    assert "<link" not in text and "<script" not in text
    for name in ("numpy", "scipy", "pandas", "PyRadiomics", "Python", "McGraw"):
        assert name in text


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: dict[str, int] = {}
        self.images: list[dict] = []
        self._table = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table":
            self._table = attributes.get("id", "")
            self.tables[self._table] = 0
        elif tag == "tr" and self._table is not None:
            self.tables[self._table] += 1
        elif tag == "img":
            self.images.append(attributes)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run_chromium(browser: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *arguments]
    return subprocess.run(command, capture_output=True, timeout=180)


def test_report_renders_in_headless_chromium(written, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (run `bash Testing/install_chromium.sh`); the HTML report was not "
                    "rendered")
    out, _outputs, _messages = written
    url = (out / "report.html").resolve().as_uri()
    dom_run = _run_chromium(browser, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom_run.returncode == 0, dom_run.stderr.decode(errors="replace")[-2000:]
    dom = _Dom()
    dom.feed(dom_run.stdout.decode("utf-8"))
    # Rows including header rows: Table 1 = 3 header + mean + median; Table 2 = 2 header + 2 x (group + 5
    # comparisons); Table 3 = header + 3 count sections x (group + 5 comparisons + "all") + 2 median sections x
    # (group + 5); per-feature table = 3 header + 11 features; Bland-Altman = header + 2 features x 2 lesion
    # types x 4 pairwise comparisons; missing summary = header + 2 x 5; missing detail = header + 1 reading.
    expected_tables = {"table-1": 5, "table-2": 14, "table-3": 1 + 3 * 7 + 2 * 6, "table-features": 14,
                       "table-bland-altman": 17, "table-missing-summary": 11, "table-missing": 2}
    for table_id, rows in expected_tables.items():
        assert table_id in dom.tables, f"{table_id} missing from the rendered page"
        assert dom.tables[table_id] == rows, (table_id, dom.tables[table_id])
    assert dom.tables.get("table-settings", 0) >= 1 + 5 + 1 + 8
    images = {image.get("id"): image for image in dom.images}
    for figure_id in ("figure-3", "figure-bland-altman-hematoma", "figure-bland-altman-calcification"):
        assert figure_id in images, f"{figure_id} missing from the rendered page"
        source = images[figure_id]["src"]
        assert source.startswith("data:image/png;base64,")
        width, height = _png_size(base64.b64decode(source.split(",", 1)[1]))
        assert width >= 400 and height >= 400, (figure_id, width, height)

    shot = tmp_path / "report.png"
    shot_run = _run_chromium(browser, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,4000",
                             url)
    assert shot_run.returncode == 0 and shot.is_file(), shot_run.stderr.decode(errors="replace")[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] == 4000 and pixels.shape[1] == 1280
    assert float(pixels[..., :3].var()) > 1e-3
    # The page is not blank beyond its header either: the lower half holds tables and figures.
    assert float(pixels[2000:, :, :3].var()) > 1e-3


def _parser():
    parser = argparse.ArgumentParser(prog="qsmrepro")
    add_cli(parser.add_subparsers(dest="command"))
    return parser


def test_cli_writes_the_report_and_prints_its_path(tmp_path, capsys):
    features = tmp_path / "features.csv"
    synthetic_features(1).to_csv(features, index=False)
    args = _parser().parse_args(["agreement", str(features), "-o", str(tmp_path / "out"), "--threshold", "0.9",
                                 "--icc-form", "C,1"])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str((tmp_path / "out" / "report.html").resolve())
    settings = pd.read_excel(tmp_path / "out" / "agreement.xlsx", sheet_name="Settings")
    values = dict(zip(settings["setting"], settings["value"]))
    assert values["Stability threshold"] == "CCC and ICC > 0.9"
    assert values["ICC form"].startswith("C,1")


def test_cli_names_the_file_and_the_missing_column(tmp_path):
    features = tmp_path / "broken.csv"
    synthetic_features().drop(columns="observer").to_csv(features, index=False)
    args = _parser().parse_args(["agreement", str(features), "-o", str(tmp_path / "out")])
    with pytest.raises(AgreementError, match=r"broken\.csv: missing column\(s\) 'observer'"):
        args.handler(args)
    assert not (tmp_path / "out").exists()
    args = _parser().parse_args(["agreement", str(tmp_path / "absent.csv"), "-o", str(tmp_path / "out")])
    with pytest.raises(InputError, match="absent.csv does not exist"):
        args.handler(args)
