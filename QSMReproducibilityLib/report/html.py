"""The study report as one self-contained HTML document: inline CSS, figures embedded as base64 PNG."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import struct
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import __version__
from ..agreement import COMPARISONS, StudyAgreement
from ..feature_table import RADIOMICS_CLASSES
from .figures import CLASS_LABELS, FIGURE_DPI, feature_label, lesion_label
from .tables import ICC_FORM_TEXT, plain_text, safe_name, settings_frame, software_versions, wcv_interval_text

__all__ = ["render_html"]

_DASH = "\u2013"


_CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#d9e2ec; --head:#f0f4f8; --accent:#1f63b4; --stable:#dbe9f8; }
* { box-sizing: border-box; }
body { margin:0; background:#f5f7fa; color:var(--ink);
       font: 14px/1.5 "Segoe UI", "Helvetica Neue", Helvetica, Arial, "Liberation Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; background:#fff; padding: 32px 44px 48px;
       box-shadow: 0 0 0 1px #e4e7eb; }
header { border-bottom: 3px solid var(--accent); padding-bottom: 14px; margin-bottom: 8px; }
h1 { font-size: 25px; margin: 0 0 4px; letter-spacing: -0.2px; }
h2 { font-size: 19px; margin: 34px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 6px; }
p { margin: 6px 0 10px; }
.sub { color: var(--muted); margin: 0; }
nav { font-size: 13px; margin: 10px 0 0; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 18px 0 6px; }
.card { flex: 1 1 160px; border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; background:#fbfcfd; }
.card .num { font-size: 22px; font-weight: 600; color: var(--accent); }
.card .lab { font-size: 12px; color: var(--muted); }
table.data { border-collapse: collapse; margin: 8px 0 6px; font-size: 13px; font-variant-numeric: tabular-nums; }
table.data th, table.data td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: right;
       white-space: nowrap; }
table.data thead th { background: var(--head); font-weight: 600; text-align: center;
       border-bottom: 1px solid #bcccdc; }
table.data th.rowhead, table.data td.rowhead { text-align: left; }
table.data tr.group td { background: #f8fafc; font-weight: 600; text-align: left; padding-top: 8px; }
table.data tbody tr:hover td { background: #f3f7fb; }
table.data td.stable { background: var(--stable); color: #0b3c75; font-weight: 600; }
table.data td.na { color: #9aa5b1; }
table.compact { font-size: 12px; }
#table-3 tbody tr:not(.group) td:not(.rowhead), #table-3 thead th { text-align: center; min-width: 150px; }
.caption { font-weight: 600; margin: 18px 0 2px; }
.note { font-size: 12px; color: var(--muted); margin: 2px 0 12px; max-width: 1000px; }
figure { margin: 14px 0 20px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { font-size: 12.5px; color: var(--muted); margin-top: 6px; max-width: 1000px; }
details { margin: 10px 0; }
details summary { cursor: pointer; color: var(--accent); font-weight: 600; }
.scroll { overflow-x: auto; }
.methods { max-width: 1000px; }
ol.refs { font-size: 12.5px; color: var(--muted); padding-left: 20px; }
footer { margin-top: 34px; font-size: 12px; color: var(--muted); border-top: 1px solid var(--line);
         padding-top: 8px; }
@media print { body { background:#fff; } main { box-shadow:none; padding: 0; } details { display:block; } }
"""

_REFERENCES = (
    "Park SI, Kim D, Jung SC, et al. Feasibility and intra- and interobserver reproducibility of quantitative "
    "susceptibility mapping with radiomic features for intracranial dissecting intramural hematomas and "
    "atherosclerotic calcifications. Sci Rep 2023.",
    "McGraw KO, Wong SP. Forming inferences about some intraclass correlation coefficients. Psychol Methods "
    "1996;1:30-46.",
    "Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater reliability. Psychol Bull "
    "1979;86:420-428.",
    "Lin LI. A concordance correlation coefficient to evaluate reproducibility. Biometrics 1989;45:255-268; "
    "correction Biometrics 2000;56:324-325.",
    "Barnhart HX, Haber M, Song J. Overall concordance correlation coefficient for evaluating agreement among "
    "multiple observers. Biometrics 2002;58:1020-1027.",
    "Hyslop NP, White WH. Estimating precision using duplicate measurements. J Air Waste Manag Assoc "
    "2009;59:1032-1039.",
    "Shoukri MM, Elkum N, Walter SD. Interval estimation and optimal design for the within-subject coefficient "
    "of variation for continuous and binary variables. BMC Med Res Methodol 2006;6:24.",
    "Efron B. Better bootstrap confidence intervals. J Am Stat Assoc 1987;82:171-185; Efron B, Tibshirani RJ. "
    "An Introduction to the Bootstrap. New York: Chapman & Hall; 1993.",
    "Bland JM, Altman DG. Statistical methods for assessing agreement between two methods of clinical "
    "measurement. Lancet 1986;327:307-310; Measuring agreement in method comparison studies. Stat Methods "
    "Med Res 1999;8:135-160.",
    "van Griethuysen JJM, Fedorov A, Parmar C, et al. Computational radiomics system to decode the "
    "radiographic phenotype. Cancer Res 2017;77:e104-e107.",
)


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "NA"
    text = f"{value:.{digits}f}"
    if float(text) == 0:                       # no "-0.000" for a value that rounds to zero
        text = f"{0:.{digits}f}"
    return text.replace("-", "\u2212")


def _ci(value, low, high, digits: int = 3) -> str:
    if not (isinstance(value, (int, float)) and math.isfinite(value)):
        return "NA"
    if not (math.isfinite(low) and math.isfinite(high)):
        return _num(value, digits)
    separator = " to " if (low < 0 or high < 0) else _DASH
    return f"{_num(value, digits)} ({_num(low, digits)}{separator}{_num(high, digits)})"


def _cell(text: str, css: str = "", title: str = "") -> str:
    classes = css + (" na" if text == "NA" else "")
    attributes = f' class="{classes.strip()}"' if classes.strip() else ""
    if title:
        attributes += f' title="{_esc(title)}"'
    return f"<td{attributes}>{_esc(text)}</td>"


def _table(table_id: str, header_rows: Sequence[Sequence[tuple[str, int, int, str]]], body: Iterable[str],
           css: str = "data") -> str:
    """HTML table; each header cell is (text, colspan, rowspan, extra class)."""
    head = []
    for row in header_rows:
        cells = []
        for text, colspan, rowspan, extra in row:
            span = (f' colspan="{colspan}"' if colspan > 1 else "") + (f' rowspan="{rowspan}"' if rowspan > 1 else "")
            klass = f' class="{extra}"' if extra else ""
            cells.append(f"<th{span}{klass}>{_esc(text)}</th>")
        head.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table id="{table_id}" class="{css}"><thead>{"".join(head)}</thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _frame_table(table_id: str, frame: pd.DataFrame, formats: Mapping[str, Callable] | None = None,
                 css: str = "data compact") -> str:
    formats = formats or {}
    textual = {c for c in frame.columns
               if not (pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]))}
    header = [[(str(c), 1, 1, "rowhead" if c in textual else "") for c in frame.columns]]
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row):
            text = formats[column](value) if column in formats else (
                _num(value) if isinstance(value, float) else str(value))
            cells.append(_cell(text, "rowhead" if column in textual else ""))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _table(table_id, header, body, css)


def _png_size(png: bytes) -> tuple[int, int]:
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        return 0, 0
    return struct.unpack(">II", png[16:24])


def _figure(figure_id: str, png: bytes, alt: str, caption: str) -> str:
    # Figures are drawn at FIGURE_DPI and shown at 96 CSS pixels per inch (sharp on high-density screens
    # and in print).
    width, height = (round(v * 96 / FIGURE_DPI) for v in _png_size(png))
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img id="{figure_id}" alt="{_esc(alt)}" width="{width}" height="{height}" '
            f'src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>')


def _table1_html(study: StudyAgreement) -> str:
    t1 = study.table1
    if t1.empty:
        return '<p class="note">The feature table has no qsm_mean / qsm_median values.</p>'
    header = [[("Measurement", 1, 3, "rowhead")] + [(lesion_label(lt), 4, 1, "") for lt in study.lesion_types],
              [(f"Observer {o}", 2, 1, "") for _lt in study.lesion_types for o in (1, 2)],
              [(r, 1, 1, "") for _lt in study.lesion_types for _o in (1, 2) for r in ("First", "Second")]]
    body = []
    counts = [_cell("Lesions (n)", "rowhead")]
    for lt in study.lesion_types:
        for o in ("O1", "O2"):
            for reading in (1, 2):
                row = t1[(t1["lesion_type"] == lt) & (t1["observer"] == o) & (t1["reading"] == reading)]
                counts.append(_cell(str(int(row["n"].max())) if not row.empty else "NA"))
    body.append("<tr>" + "".join(counts) + "</tr>")
    for feature, label in (("qsm_mean", "Mean (ppm)"), ("qsm_median", "Median (ppm)")):
        cells = [_cell(label, "rowhead")]
        for lt in study.lesion_types:
            for o in ("O1", "O2"):
                for reading in (1, 2):
                    row = t1[(t1["feature"] == feature) & (t1["lesion_type"] == lt) & (t1["observer"] == o)
                             & (t1["reading"] == reading)]
                    if row.empty:
                        cells.append(_cell("NA"))
                    else:
                        r = row.iloc[0]
                        cells.append(_cell(f"{_num(r['mean_ppm'])} \u00b1 {_num(r['sd_ppm'])}",
                                           title=f"n = {r['n']}"))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _table("table-1", header, body)


def _table2_html(study: StudyAgreement) -> tuple[str, str]:
    t2 = study.table2
    if t2.empty:
        return '<p class="note">The feature table has no qsm_mean / qsm_median values.</p>', ""
    header = [[("", 1, 2, "rowhead")] + [(lesion_label(lt), 4, 1, "") for lt in study.lesion_types],
              [(h, 1, 1, "") for _lt in study.lesion_types
               for h in ("n", f"ICC ({study.icc_form})", "wCV, RMS (%)", "wCV, pooled (%)")]]
    body, shifts = [], []
    for feature, label in (("qsm_mean", "Mean"), ("qsm_median", "Median")):
        part = t2[t2["feature"] == feature]
        if part.empty:
            continue
        body.append(f'<tr class="group"><td colspan="{1 + 4 * len(study.lesion_types)}">{label}</td></tr>')
        for comparison in COMPARISONS:
            cells = [_cell(comparison.name, "rowhead")]
            for lt in study.lesion_types:
                row = part[(part["comparison"] == comparison.name) & (part["lesion_type"] == lt)]
                if row.empty:
                    cells += [_cell("NA")] * 4
                    continue
                r = row.iloc[0]
                n_text = f"{r['n']}" + (f" ({r['n_dropped']} dropped)" if r["n_dropped"] else "")
                mark = ""
                if r["wcv_shift"]:
                    mark = "\u2020"
                    shifts.append(r["wcv_shift"])
                cells += [_cell(n_text), _cell(_ci(r["icc"], r["icc_ci_low"], r["icc_ci_high"]), title=r["reason"]),
                          _cell(_ci(r["wcv"], r["wcv_ci_low"], r["wcv_ci_high"], 1) + mark, title=r["reason"]),
                          _cell(_ci(r["wcv_pooled"], r["wcv_pooled_ci_low"], r["wcv_pooled_ci_high"], 1))]
            body.append("<tr>" + "".join(cells) + "</tr>")
    note = ""
    if shifts:
        note = ("\u2020 Values of both signs: shifted before the wCV towards the side that needed the smaller "
                f"shift, as in the study ({len(shifts)} of {len(t2)} rows; the constant added, in ppm, is in "
                "column wcv_shift of table2_qsm_agreement.csv and agreement.xlsx).")
    return _table("table-2", header, body), note


def _table3_html(study: StudyAgreement) -> str:
    t3 = study.table3
    columns = list(study.lesion_types) + (["both types"] if len(study.lesion_types) > 1 else [])
    header = [[("", 1, 1, "rowhead")] + [(lesion_label(c) if c != "both types" else "Both types\u1d43", 1, 1, "")
                                         for c in columns]]
    body = []
    names = [c.name for c in COMPARISONS] + ["All comparisons"]
    thr = f"{study.threshold:g}"
    sections = ((f"Number of radiomic features with CCC > {thr}\u1d47", "n_ccc_above", "pct_ccc_above"),
                (f"Number of radiomic features with ICC > {thr}\u1d47", "n_icc_above", "pct_icc_above"),
                (f"Stable radiomic features (CCC and ICC > {thr})\u1d47", "n_stable", "pct_stable"),
                ("Median CCC", "median_ccc", None), ("Median ICC", "median_icc", None))
    for title, count, pct in sections:
        body.append(f'<tr class="group"><td colspan="{1 + len(columns)}">{_esc(title)}</td></tr>')
        for name in names:
            if pct is None and name == "All comparisons":
                continue
            cells = [_cell(name, "rowhead")]
            for c in columns:
                row = t3[(t3["comparison"] == name) & (t3["lesion_type"] == c)]
                if row.empty:
                    cells.append(_cell("NA"))
                elif pct is None:
                    cells.append(_cell(_num(row.iloc[0][count])))
                else:
                    r = row.iloc[0]
                    share = "NA" if not math.isfinite(r[pct]) else f"{r[pct]:.0f}%"
                    cells.append(_cell(f"{int(r[count])} ({share})"))
            body.append("<tr>" + "".join(cells) + "</tr>")
    return _table("table-3", header, body)


def _stable_lists_html(study: StudyAgreement) -> str:
    fa = study.feature_agreement
    radiomic = fa[fa["feature_class"].isin(RADIOMICS_CLASSES)]
    parts, sets = [], []
    for lt in study.lesion_types:
        part = radiomic[radiomic["lesion_type"] == lt]
        per_feature = part.groupby("feature", sort=False)["stable"].agg(["all", "size"])
        stable = [f for f, r in per_feature.iterrows() if r["all"] and r["size"] == len(COMPARISONS)]
        sets.append(set(stable))
        listed = ", ".join(f"{feature_label(f)} ({CLASS_LABELS.get(f.split('_')[1], '')})" for f in stable)
        parts.append(f"<p><b>{_esc(lesion_label(lt))}</b>: {len(stable)} feature(s) stable in all five "
                     f"comparisons{': ' + _esc(listed) if stable else '.'}</p>")
    if len(sets) > 1:
        common = sorted(set.intersection(*sets))
        listed = ", ".join(f"{feature_label(f)} ({CLASS_LABELS.get(f.split('_')[1], '')})" for f in common)
        parts.append(f"<p><b>Both lesion types</b>: {len(common)} feature(s)"
                     f"{': ' + _esc(listed) if common else '.'}</p>")
    return "".join(parts)


def _feature_table_html(study: StudyAgreement) -> str:
    fa = study.feature_agreement
    comparisons = [c.name for c in COMPARISONS]
    header = [[("Feature", 1, 3, "rowhead"), ("Class", 1, 3, "rowhead")]
              + [(lesion_label(lt), 2 * len(comparisons), 1, "") for lt in study.lesion_types],
              [(s, len(comparisons), 1, "") for _lt in study.lesion_types for s in ("CCC", f"ICC ({study.icc_form})")],
              [(c, 1, 1, "") for _lt in study.lesion_types for _s in (0, 1) for c in comparisons]]
    records = {(r["feature"], r["lesion_type"], r["comparison"]): r for r in fa.to_dict("records")}
    class_of = dict(zip(fa["feature"], fa["feature_class"]))
    body = []
    for feature in dict.fromkeys(fa["feature"]):
        klass = class_of[feature]
        cells = [_cell(feature_label(feature) if klass in RADIOMICS_CLASSES else feature, "rowhead", title=feature),
                 _cell(CLASS_LABELS.get(klass, "QSM" if klass == "qsm" else klass), "rowhead")]
        for lt in study.lesion_types:
            for stat in ("ccc", "icc"):
                for comp in comparisons:
                    r = records.get((feature, lt, comp))
                    if r is None:
                        cells.append(_cell("NA"))
                        continue
                    cells.append(_cell(_num(r[stat]), "stable" if r["stable"] else "",
                                       title=f"{_ci(r[stat], r[stat + '_ci_low'], r[stat + '_ci_high'])}; n = "
                                             f"{r['n']}" + (f"; {r['reason']}" if r["reason"] else "")))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _table("table-features", header, body, "data compact")


def _bland_altman_html(study: StudyAgreement) -> str:
    ba = study.bland_altman
    header = [[("Feature", 1, 1, "rowhead"), ("Lesion type", 1, 1, "rowhead"), ("Comparison", 1, 1, "rowhead"),
               ("Difference", 1, 1, ""), ("n", 1, 1, ""), ("Bias (95% CI), ppm", 1, 1, ""),
               ("Lower limit (95% CI), ppm", 1, 1, ""), ("Upper limit (95% CI), ppm", 1, 1, "")]]
    body = []
    for r in ba.to_dict("records"):
        body.append("<tr>" + "".join([
            _cell({"qsm_mean": "Mean QSM", "qsm_median": "Median QSM"}.get(r["feature"], r["feature"]), "rowhead"),
            _cell(lesion_label(r["lesion_type"]), "rowhead"),
            _cell(r["comparison"], "rowhead"), _cell(r["difference"].replace(" - ", " \u2212 ")),
            _cell(str(r["n"])),
            _cell(_ci(r["bias"], r["bias_ci_low"], r["bias_ci_high"], 4), title=r["reason"]),
            _cell(_ci(r["loa_low"], r["loa_low_ci_low"], r["loa_low_ci_high"], 4)),
            _cell(_ci(r["loa_high"], r["loa_high_ci_low"], r["loa_high_ci_high"], 4))]) + "</tr>")
    return _table("table-bland-altman", header, body, "data compact")


def _missing_html(study: StudyAgreement) -> str:
    fa = study.feature_agreement
    summary = (fa.groupby(["lesion_type", "comparison"], sort=False)
               .agg(subjects=("n_subjects", "max"), complete_min=("n", "min"), dropped_max=("n_dropped", "max"),
                    features_with_drops=("n_dropped", lambda s: int((s > 0).sum())))
               .reset_index())
    summary["lesion_type"] = summary["lesion_type"].map(lesion_label)
    summary.columns = ["Lesion type", "Comparison", "Subjects", "Complete (fewest over features)",
                       "Dropped (most over features)", "Features with dropped subjects"]
    parts = [_frame_table("table-missing-summary", summary)]
    missing = study.missing_readings
    if missing.empty:
        parts.append('<p class="note">No reading has a missing feature value.</p>')
    else:
        shown = missing.copy()
        shown["lesion_type"] = shown["lesion_type"].map(lesion_label)
        shown = shown.rename(columns={"lesion_type": "Lesion type", "case_id": "Case", "lesion_id": "Lesion",
                                      "observer": "Observer", "observer_id": "Observer ID",
                                      "reading": "Reading", "n_missing": "Missing values",
                                      "n_features": "Features", "features": "Which", "reasons": "Reason"})
        parts.append('<p class="caption">Readings with missing values</p>')
        parts.append(_frame_table("table-missing", shown))
    return "".join(parts)


def _summary_cards(study: StudyAgreement) -> str:
    cards = []
    for row in study.cohort.itertuples(index=False):
        cards.append((f"{row.n_lesions}", f"{lesion_label(row.lesion_type).lower()} lesions in {row.n_cases} "
                                          f"cases ({row.n_bilateral_cases} bilateral)"))
    n_radiomic = len(study.radiomics_features)
    cards.append((f"{n_radiomic}", "PyRadiomics features analysed"))
    all_rows = study.table3[study.table3["comparison"] == "All comparisons"]
    for r in all_rows.itertuples(index=False):
        label = "both lesion types" if r.lesion_type == "both types" else lesion_label(r.lesion_type).lower()
        cards.append((f"{r.n_stable}", f"features stable in all comparisons, {label}"))
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="num">{_esc(n)}</div><div class="lab">{_esc(t)}</div></div>'
        for n, t in cards) + "</div>"


def _key_results(study: StudyAgreement) -> str:
    t2 = study.table2
    sentences = []
    for lt in study.lesion_types:
        part = t2[(t2["lesion_type"] == lt)]
        if part.empty or part["icc"].notna().sum() == 0:
            continue
        sentences.append(
            f"{lesion_label(lt)}: ICC of mean and median QSM {_num(part['icc'].min())}{_DASH}"
            f"{_num(part['icc'].max())}, RMS wCV {_num(part['wcv'].min(), 1)}{_DASH}{_num(part['wcv'].max(), 1)} %.")
    t1 = study.table1
    for lt in study.lesion_types:
        values = study.wide.xs((lt, "qsm_mean"), level=("lesion_type", "feature")) \
            if "qsm_mean" in set(study.wide.index.get_level_values("feature")) else None
        if values is not None and not t1.empty:
            flat = values.to_numpy(dtype=float).ravel()
            flat = flat[np.isfinite(flat)]
            if flat.size > 1:
                sentences.append(f"Mean QSM of {lesion_label(lt).lower()}s over all readings: "
                                 f"{_num(flat.mean())} \u00b1 {_num(flat.std(ddof=1))} ppm.")
    return "<p>" + " ".join(_esc(s) for s in sentences) + "</p>" if sentences else ""


def _observers_text(study: StudyAgreement) -> str:
    """'O1 = anna, O2 = ben', or nothing when the observer IDs already are O1 and O2."""
    if tuple(study.observers) == ("O1", "O2"):
        return ""
    return f"O1 = {study.observers[0]}, O2 = {study.observers[1]}"


def _methods_html(study: StudyAgreement, settings: Mapping) -> str:
    versions = software_versions()
    dropped = int(study.table2["n_dropped"].max()) if not study.table2.empty else 0
    level = f"{100 * (1 - study.alpha):g} %"
    observers = _observers_text(study)
    wcv_interval = wcv_interval_text(study) or "BCa bootstrap, subjects resampled"
    settings_text = "; ".join(f"{k}: {plain_text(v)}" for k, v in settings.items())
    text = (
        "Two observers" + (f" ({observers}; O1 is the first ID in sorted order)" if observers else "")
        + " each read every lesion twice. Agreement was assessed per lesion type in five comparisons: O1 intra "
        "(first vs. second reading of O1), O2 intra, 1st inter (first readings of O1 and O2), 2nd inter (second "
        "readings) and intra and inter (all four readings). A subject is one lesion (case and side); a lesion "
        "lacking a reading was left out of the comparisons that use that reading only"
        + (f" (at most {dropped} per comparison for mean and median QSM)" if dropped else "")
        + "; the missing readings are listed below. "
        f"ICCs are of the form {ICC_FORM_TEXT[study.icc_form]} (McGraw & Wong 1996), computed from the ANOVA "
        f"mean squares, with {level} confidence intervals from the F distribution"
        + (" with Satterthwaite's degrees of freedom" if study.icc_form.startswith("A") else "")
        + (" (ICC(A,k) limits: Spearman\u2013Brown step-up of the ICC(A,1) limits)" if study.icc_form == "A,k"
           else "")
        + "; for the intra-and-inter comparison the same form is computed over all four readings. "
        "The within-subject coefficient of variation (wCV) is the root mean square of the per-lesion CVs, "
        "100\u00b7\u221a(mean s\u1d62\u00b2/m\u1d62\u00b2) (Hyslop & White 2009; MedCalc's root-mean-square "
        "method, the study's definition); the pooled wCV, 100\u00b7\u221aMSW/|mean| (within-subject mean square "
        "of the one-way ANOVA over the grand mean; Shoukri et al. 2006), is given as well. Confidence intervals "
        f"of both wCVs: bias-corrected and accelerated bootstrap over lesions ({wcv_interval.split(', ', 1)[-1]}; "
        "Efron 1987; Efron & Tibshirani 1993, section 14.3), which assumes neither normal readings nor one CV "
        "common to all lesions. Values of both signs "
        "were shifted before the wCV towards the side that needed the smaller shift (the most extreme value on "
        "that side becomes 0), as in the study. Radiomic features were compared with Lin's concordance "
        f"correlation coefficient (CCC; {level} interval on Fisher's z scale with the asymptotic variance of "
        "Lin 1989/2000, as epiR::epi.ccc) for two readings and Barnhart's overall CCC for four readings "
        "(delete-one jackknife on Fisher's z scale, t distribution with n \u2212 1 degrees of freedom; Barnhart "
        "et al. 2002 estimated its variance by GEE instead), and with the ICC above; a feature was regarded as "
        f"stable in a comparison when both CCC and ICC exceeded {study.threshold:g}. Bland\u2013Altman bias and "
        "limits of agreement (bias \u00b1 1.96 SD of the differences) are given with t-based "
        f"{level} intervals (Bland & Altman 1986, 1999). "
        + (f"Settings: {settings_text}. " if settings_text else "")
        + f"Software: QSMReproducibility {versions['QSMReproducibility']} on Python {versions['Python']} "
        f"(numpy {versions['numpy']}, scipy {versions['scipy']}, pandas {versions['pandas']}, matplotlib "
        f"{versions['matplotlib']}); features from PyRadiomics {versions['PyRadiomics']}.")
    settings_table = settings_frame(study, settings)
    settings_table.columns = ["Setting", "Value"]
    refs = "".join(f"<li>{_esc(r)}</li>" for r in _REFERENCES)
    return (f'<div class="methods"><p>{_esc(text)}</p></div>'
            f'<p class="caption">Settings and software</p>{_frame_table("table-settings", settings_table)}'
            f'<h3>References</h3><ol class="refs">{refs}</ol>')


def render_html(study: StudyAgreement, figures: Mapping[str, bytes], *, settings: Mapping | None = None) -> str:
    """The self-contained HTML report of an analysed study.

    Parameters
    ----------
    study : StudyAgreement
    figures : mapping
        ``"figure3"`` and ``"bland_altman_<lesion type>"`` PNG bytes.
    settings : mapping, optional
        Extra settings to list.

    Returns
    -------
    str
        HTML text with inline CSS and base64-embedded images; it references no external resource.
    """
    settings = settings or {}
    generated = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
    table2_html, table2_note = _table2_html(study)
    thr = f"{study.threshold:g}"
    sections = [
        '<header><h1>QSM reproducibility study: intra- and interobserver agreement</h1>'
        f'<p class="sub">Generated {_esc(generated)} by QSMReproducibility {_esc(__version__)}. '
        + (f'Observers: {_esc(_observers_text(study))}. ' if _observers_text(study) else '')
        + f'ICC: {_esc(ICC_FORM_TEXT[study.icc_form])}; stable feature: CCC and ICC &gt; {thr}.</p>'
        '<nav><a href="#sec-table1">Table 1</a><a href="#sec-table2">Table 2</a><a href="#sec-table3">Table 3</a>'
        '<a href="#sec-figure3">Figure 3</a><a href="#sec-bland-altman">Bland\u2013Altman</a>'
        '<a href="#sec-features">All features</a><a href="#sec-missing">Missing readings</a>'
        '<a href="#sec-methods">Methods</a></nav></header>',
        _summary_cards(study),
        _key_results(study),
        '<section id="sec-table1"><h2>Table 1. QSM values of the lesions</h2>',
        _table1_html(study),
        '<p class="note">Mean \u00b1 standard deviation over lesions of the CSF-referenced mean and median '
        'susceptibility (ppm) per observer and reading.</p></section>',
        '<section id="sec-table2"><h2>Table 2. Intra- and interobserver reproducibility of QSM values</h2>',
        table2_html,
        f'<p class="note">Estimate ({100 * (1 - study.alpha):g} % confidence interval). ICC intraclass '
        'correlation coefficient; wCV within-subject coefficient of variation (RMS: root mean square of '
        'per-subject CVs, the study\'s definition; pooled: \u221aMSW / |mean|). 1st / 2nd inter: first / second '
        'readings of O1 vs. O2; intra and inter: all four readings. wCV intervals: BCa bootstrap over lesions '
        '(see Methods). ' + table2_note + '</p></section>',
        f'<section id="sec-table3"><h2>Table 3. Reproducibility of radiomic features (CCC and ICC &gt; {thr})</h2>',
        _table3_html(study),
        '<p class="note">\u1d43 Features above the threshold in every lesion type. \u1d47 Number of features '
        '(percentage of the PyRadiomics features analysed). "All comparisons": above the threshold in all five '
        'comparisons. Intra and inter uses Barnhart\'s overall CCC.</p>',
        _stable_lists_html(study), '</section>',
        '<section id="sec-figure3"><h2>Figure 3. CCC and ICC of every radiomic feature</h2>',
        _figure("figure-3", figures["figure3"], "Heatmap of CCC and ICC of each radiomic feature",
                f"Heatmap of the concordance correlation coefficients (CCC) and intraclass correlation coefficients "
                f"(ICC {_esc(study.icc_form)}) of the radiomic features, grouped by feature class (number of "
                f"features in parentheses). Blue cells: features stable in that comparison (CCC and ICC &gt; "
                f"{thr}); grey shading: value from 0 (white) to 1 (dark), the threshold marked on the scale; pale "
                "red: not computable (the reason is in the per-feature table). Intra and inter: Barnhart's "
                "overall CCC and the ICC over all four readings."),
        '</section>',
        '<section id="sec-bland-altman"><h2>Bland\u2013Altman analysis of mean QSM</h2>',
    ]
    for lt in study.lesion_types:
        key = f"bland_altman_{lt}"
        if key in figures:
            sections.append(_figure(f"figure-{safe_name(key).replace('_', '-')}", figures[key],
                                    f"Bland\u2013Altman plots of mean QSM, {lt}",
                                    "Bland\u2013Altman plots of the mean QSM of "
                                    f"{_esc(lesion_label(lt).lower())}s for the "
                                    "four pairwise comparisons: difference against mean of the two readings, bias "
                                    "(solid) and 95 % limits of agreement (dashed) with their 95 % confidence "
                                    "intervals (shaded)."))
    sections += [_bland_altman_html(study), '</section>',
                 '<section id="sec-features"><h2>Per-feature agreement</h2>'
                 '<details><summary>CCC and ICC of every feature in every comparison (blue: stable; hover a value '
                 'for its confidence interval)</summary>', _feature_table_html(study), '</details></section>',
                 '<section id="sec-missing"><h2>Missing readings</h2>', _missing_html(study), '</section>',
                 '<section id="sec-methods"><h2>Methods</h2>', _methods_html(study, settings), '</section>',
                 '<footer>Tables as CSV and in agreement.xlsx next to this file; figures as PNG.</footer>']
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<title>QSM reproducibility: agreement report</title>'
            f'<style>{_CSS}</style></head><body><main>' + "\n".join(sections) + "</main></body></html>\n")
