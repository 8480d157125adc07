"""The agreement report: files, workbook, CSV contents, the CLI, and the HTML rendered in headless Chromium.

The synthetic study has a known structure: radiomic features ``*_Stable*`` repeat the subject's true value
with 1 % noise (CCC and ICC close to 1 in every comparison), ``*_Noise*`` are independent draws at every
reading (CCC and ICC near 0), one shape feature is constant (not computable) and one reading misses one value.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import stat
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from QSMReproducibilityLib import agreement as ag
from QSMReproducibilityLib.errors import AgreementError, Cancelled, InputError
from QSMReproducibilityLib.cli.agreement import add_command as add_cli
from QSMReproducibilityLib.report import CSV_FILES, XLSX_SHEETS, write_report
from QSMReproducibilityLib.report.figures import FIGURE_DPI, STABLE_COLOR

from cli_driver import qsmrepro

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
    # Rows including header rows: Table 1 = 3 header + lesions (n) + mean + median; Table 2 = 2 header + 2 x (group + 5
    # comparisons); Table 3 = header + 3 count sections x (group + 5 comparisons + "all") + 2 median sections x
    # (group + 5); per-feature table = 3 header + 11 features; Bland-Altman = header + 2 features x 2 lesion
    # types x 4 pairwise comparisons; missing summary = header + 2 x 5; missing detail = header + 1 reading.
    expected_tables = {"table-1": 6, "table-2": 14, "table-3": 1 + 3 * 7 + 2 * 6, "table-features": 14,
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

    # Layout as the browser computed it: a copy of the page with a probe script that writes the position
    # and size of every table and figure into the DOM (the report itself carries no script).
    probe = tmp_path / "probe.html"
    script = (
        "<script>window.addEventListener('load', () => { const out = {}; "
        "document.querySelectorAll('table[id], img[id]').forEach(e => { const r = e.getBoundingClientRect(); "
        "const c = e.parentElement.getBoundingClientRect(); "
        "out[e.id] = {x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height, "
        "natural: e.naturalWidth || 0, clip_x: c.left + scrollX, clip_w: c.width, "
        "shown: e.closest('details:not([open])') === null}; }); out.page = {h: document.documentElement.scrollHeight}; "
        "const pre = document.createElement('pre'); pre.id = 'layout'; pre.textContent = JSON.stringify(out); "
        "document.body.appendChild(pre); });</script>")
    probe.write_text((out / "report.html").read_text(encoding="utf-8").replace("</body>", script + "</body>"),
                     encoding="utf-8")
    layout_run = _run_chromium(browser, tmp_path / "profile-layout", "--window-size=1280,1000",
                               "--virtual-time-budget=10000", "--dump-dom", probe.resolve().as_uri())
    assert layout_run.returncode == 0, layout_run.stderr.decode(errors="replace")[-2000:]
    found = re.search(r'<pre id="layout">(.*?)</pre>', layout_run.stdout.decode("utf-8"), re.S)
    assert found, "the layout probe did not run"
    layout = json.loads(found.group(1).replace("&quot;", '"'))
    for element_id in list(expected_tables) + ["figure-3", "figure-bland-altman-hematoma",
                                                "figure-bland-altman-calcification"]:
        box = layout[element_id]
        assert box["w"] >= 200 and box["h"] >= 40, (element_id, box)
        # Wide tables scroll inside their own box; nothing widens the page itself.
        assert box["clip_x"] + box["clip_w"] <= 1280 + 1, f"{element_id} runs off the 1280-pixel page: {box}"
    for figure_id in ("figure-3", "figure-bland-altman-hematoma", "figure-bland-altman-calcification"):
        box = layout[figure_id]
        assert box["natural"] > 0, f"{figure_id} was not decoded"
        # Figures are drawn at FIGURE_DPI and shown at 96 CSS pixels per inch.
        assert box["w"] == pytest.approx(box["natural"] * 96 / FIGURE_DPI, abs=1.5)

    page_height = int(layout["page"]["h"])
    shot = tmp_path / "report.png"
    shot_run = _run_chromium(browser, tmp_path / "profile-shot", f"--screenshot={shot}", "--hide-scrollbars",
                             f"--window-size=1280,{page_height}", url)
    assert shot_run.returncode == 0 and shot.is_file(), shot_run.stderr.decode(errors="replace")[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (page_height, 1280)
    # Every table and figure is painted where the browser laid it out: its box is not blank (the
    # per-feature table sits in a closed <details> until the reader opens it).
    assert not layout["table-features"]["shown"]
    for element_id in [e for e in expected_tables if e != "table-features"] + [
            "figure-3", "figure-bland-altman-hematoma", "figure-bland-altman-calcification"]:
        box = layout[element_id]
        assert box["shown"], element_id
        y0, x0 = int(box["y"]), int(box["x"])
        crop = pixels[y0:y0 + int(box["h"]), x0:min(x0 + int(box["w"]), int(box["clip_x"] + box["clip_w"]))]
        assert crop.size and float(crop.var()) > 1e-3, f"{element_id} is blank in the screenshot"
    # The stable cells of Figure 3 show in the screenshot in the study's blue.
    box = layout["figure-3"]
    heatmap = pixels[int(box["y"]):int(box["y"] + box["h"]), int(box["x"]):int(box["x"] + box["w"])]
    blue = np.array([int(STABLE_COLOR[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    assert (np.abs(heatmap - blue).max(axis=-1) < 0.08).mean() > 0.01


def _stable_rows_of_heatmap(png: bytes) -> int:
    """Bands of rows with stable (blue) cells in the map area of a Figure 3 PNG."""
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(png))[..., :3]
    map_area = pixels[: pixels.shape[0] - int(1.0 * FIGURE_DPI)]          # the colour scale is below the map
    blue = np.array([int(STABLE_COLOR[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    rows = (np.abs(map_area - blue).max(axis=-1) < 0.02).sum(axis=1) > 100
    return int(np.count_nonzero(np.diff(rows.astype(int)) == 1))


def test_heatmap_marks_exactly_the_stable_features(written):
    out, _outputs, _messages = written
    # The three stable features lie in three different classes, so their cells form three bands of rows.
    assert _stable_rows_of_heatmap((out / "figure3_heatmap.png").read_bytes()) == len(STABLE)


def test_report_states_the_methods_and_counts_missing_readings(written):
    out, _outputs, _messages = written
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "two-way random effects, absolute agreement, single measurement" in text
    assert "BCa bootstrap" in text and "jackknife" in text and "Satterthwaite" in text
    assert "CCC and ICC exceeded 0.85" in text
    # hem03 lacks O2R2 of qsm_mean: counted in Table 2 and listed with its reason.
    assert "40" not in re.findall(r"\((\d+) dropped\)", text) and "1 dropped" in text
    assert "segment empty" in text


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


# ------------------------------------------------------------------------------------------------ CLI, bad input

def _bad_tables() -> dict[str, tuple[pd.DataFrame, str]]:
    good = synthetic_features()
    text = good.astype({"value": object})
    text.loc[5, "value"] = "0.12 ppm"
    duplicate = pd.concat([good, good.iloc[[10]]], ignore_index=True)
    few = good[good["case_id"].isin(["hem00", "hem01", "cal00", "cal01"])]
    constant = good.assign(value=0.25, reason="")
    reading_text = good.astype({"reading": object})
    reading_text.loc[3, "reading"] = "second"
    return {
        "text where numbers belong": (text, r"text where numbers belong in 1 row\(s\): row 7 .*'0\.12 ppm'"),
        "duplicate rows": (duplicate, r"2 rows repeat the same case, lesion, observer, reading and feature"),
        "fewer than three subjects": (few, r"too few lesions to measure agreement \(hematoma: 2, "
                                           r"calcification: 2\)"),
        "zero variance": (constant, r"no agreement statistic could be computed for any feature; .*same value"),
        "text in the reading column": (reading_text, r"column 'reading' must hold whole numbers"),
        "missing column": (good.drop(columns="lesion_type"), r"missing column\(s\) 'lesion_type'"),
    }


@pytest.mark.parametrize("kind", list(_bad_tables()))
def test_cli_rejects_bad_input_in_one_line_and_writes_nothing(kind, tmp_path):
    table, message = _bad_tables()[kind]
    features = tmp_path / "features.csv"
    table.to_csv(features, index=False)
    result = qsmrepro("agreement", str(features), "-o", str(tmp_path / "report"), cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("qsmrepro: error: ") and str(features) in lines[0]
    assert re.search(message, lines[0]), lines[0]
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.csv"]


@pytest.mark.parametrize("kind", list(_bad_tables()))
def test_api_rejects_the_same_bad_input_with_an_agreement_error(kind, tmp_path):
    table, message = _bad_tables()[kind]
    with pytest.raises(AgreementError, match=message):
        write_report(table, tmp_path / "report", source="features.csv")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"), ("", "is empty"), ("\x00\x01\x02\xff\xfe", "cannot read feature table|missing column"),
])
def test_cli_names_an_unreadable_feature_file(content, message, tmp_path):
    features = tmp_path / "features.csv"
    if content is not None:
        features.write_bytes(content.encode("latin-1"))
    result = qsmrepro("agreement", str(features), "-o", str(tmp_path / "report"), cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.search(message, result.stderr) and "Traceback" not in result.stderr
    assert not (tmp_path / "report").exists()


def test_cli_states_the_chosen_icc_form_and_threshold(tmp_path):
    features = tmp_path / "features.csv"
    synthetic_features(1).to_csv(features, index=False)
    result = qsmrepro("agreement", str(features), "-o", str(tmp_path / "report"), "--icc-form", "C,1",
                       "--threshold", "0.9", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str((tmp_path / "report" / "report.html").resolve())
    text = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "two-way, consistency, single measurement (ICC(C,1)" in text
    assert "CCC and ICC exceeded 0.9." in text and "ICC (C,1)" in text
    fa = pd.read_csv(tmp_path / "report" / "feature_agreement.csv")
    assert ((fa["ccc"] > 0.9) & (fa["icc"] > 0.9)).eq(fa["stable"]).all()
    # The ICC column is ICC(C,1): O1 (observer_a, first in sorted order) intra of qsm_mean in haematomas.
    table = synthetic_features(1)
    part = table[(table["feature"] == "qsm_mean") & (table["lesion_type"] == "hematoma")
                 & (table["observer"] == "observer_a")]
    matrix = part.pivot(index="case_id", columns="reading", values="value").dropna().to_numpy()
    row = fa[(fa["feature"] == "qsm_mean") & (fa["lesion_type"] == "hematoma") & (fa["comparison"] == "O1 intra")]
    assert row["icc"].iloc[0] == pytest.approx(ag.icc(matrix, "C,1").value, abs=1e-12)
    assert row["icc"].iloc[0] != pytest.approx(ag.icc(matrix, "A,1").value, abs=1e-9)
    bad = qsmrepro("agreement", str(features), "-o", str(tmp_path / "other"), "--icc-form", "2,1", cwd=tmp_path,
                   timeout=300)
    assert bad.returncode == 2 and "invalid choice: '2,1'" in bad.stderr and not (tmp_path / "other").exists()


# ------------------------------------------------------------------------------------------------ writing

def test_failed_or_cancelled_report_leaves_an_existing_folder_untouched(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "features.csv").write_text("kept")
    (out / "report.html").write_text("previous report")
    calls = []

    def cancel_late(fraction, message):
        calls.append(fraction)
        return fraction < 0.9

    with pytest.raises(Cancelled):
        write_report(synthetic_features(), out, progress=cancel_late)
    assert max(calls) >= 0.9
    with pytest.raises(AgreementError):
        write_report(synthetic_features().assign(value=1.0), out)
    assert sorted(p.name for p in out.iterdir()) == ["features.csv", "report.html"]
    assert (out / "report.html").read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]          # no staging folder left


def test_report_into_an_existing_folder_keeps_other_files_and_uses_normal_permissions(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "features.csv").write_text("kept")
    outputs = write_report(synthetic_features(), out)
    assert (out / "features.csv").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    umask = os.umask(0)
    os.umask(umask)
    for path in outputs.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_report_path_that_is_a_file_is_an_input_error(tmp_path):
    target = tmp_path / "report"
    target.write_text("a file")
    with pytest.raises(InputError, match="exists and is not a folder"):
        write_report(synthetic_features(), target)


def test_a_feature_table_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from QSMReproducibilityLib.feature_table import read_feature_csv, write_feature_table

    table = pd.DataFrame({"case_id": ["007", "012"], "lesion_id": ["right", "left"],
                          "lesion_type": ["hematoma", "calcification"], "observer": ["O1", "O2"],
                          "reading": [1, 2], "feature": ["qsm_mean", "qsm_median"], "value": [0.125, -0.0625]})
    path = tmp_path / "export" / "features.csv"
    assert write_feature_table(table, path) == path
    pd.testing.assert_frame_equal(read_feature_csv(path)[list(table.columns)], table, check_dtype=False)
    written = path.read_bytes()

    # A write that fails half-way leaves the earlier table, and no temporary file, behind.
    def fail_half_way(self, target, **kwargs):
        Path(target).write_text("case_id,lesion_id\n007,")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_half_way)
    with pytest.raises(OSError, match="disk full"):
        write_feature_table(table.assign(value=[9.0, 9.0]), path)
    assert path.read_bytes() == written
    assert sorted(p.name for p in path.parent.iterdir()) == ["features.csv"]
    monkeypatch.undo()

    xlsx = write_feature_table(table, tmp_path / "features.xlsx")
    pd.testing.assert_frame_equal(pd.read_excel(xlsx, dtype={"case_id": str}), table, check_dtype=False)
