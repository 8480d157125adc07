"""The QSM reproducibility study's comparisons and tables from a long feature table.

:func:`analyze_study` turns a long feature table (see :mod:`QSMReproducibilityLib.feature_table`) into the
five comparisons of the study per lesion type -- "O1 intra", "O2 intra", "1st inter", "2nd inter" and
"Intra and inter" (all four readings) -- and into Tables 1-3 of Park et al., Sci Rep 2023 ("Feasibility and
intra- and interobserver reproducibility of quantitative susceptibility mapping with radiomic features ...").
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import AgreementError
from ..feature_table import (QSM_FEATURES, RADIOMICS_CLASSES, feature_class, ordered_lesion_types,
                             validate_feature_table)
from ..progress import ProgressCallback, notify
from ._checks import MIN_SUBJECTS, check_alpha
from .concordance import lin_ccc, overall_ccc
from .intraclass import ICC_FORMS, icc
from .limits_of_agreement import bland_altman
from .variation import wcv


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One comparison of the study: a name and the readings (observer slot, reading number) it uses."""

    name: str
    readings: tuple[tuple[int, int], ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Column labels such as ``"O1R1"`` of the readings in this comparison."""
        return tuple(f"O{observer}R{reading}" for observer, reading in self.readings)

    @property
    def pairwise(self) -> bool:
        return len(self.readings) == 2


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("O1 intra", ((1, 1), (1, 2))),
    Comparison("O2 intra", ((2, 1), (2, 2))),
    Comparison("1st inter", ((1, 1), (2, 1))),
    Comparison("2nd inter", ((1, 2), (2, 2))),
    Comparison("Intra and inter", ((1, 1), (1, 2), (2, 1), (2, 2))),
)

_SLOTS = ("O1R1", "O1R2", "O2R1", "O2R2")


@dataclasses.dataclass(frozen=True)
class StudyAgreement:
    """Everything :func:`analyze_study` computes, as tidy tables.

    Attributes
    ----------
    observers : tuple[str, str]
        Observer IDs; O1 is the first in sorted order, O2 the second.
    lesion_types : tuple[str, ...]
    threshold, icc_form, alpha :
        Settings of the analysis.
    cohort : DataFrame
        Per lesion type: cases, lesions (subjects) and bilateral cases.
    table1 : DataFrame
        Mean and SD of ``qsm_mean`` / ``qsm_median`` per lesion type x observer x reading.
    table2 : DataFrame
        ICC, RMS wCV, pooled wCV and CCC with intervals for ``qsm_mean`` / ``qsm_median`` per lesion type x
        comparison.
    table3 : DataFrame
        Counts and percentages of radiomic features with CCC, ICC and both above the threshold, medians of
        CCC and ICC, per comparison x lesion type (and ``"both types"``).
    feature_agreement : DataFrame
        CCC and ICC with intervals for every feature x lesion type x comparison (``stable`` column).
    bland_altman : DataFrame
        Bias and limits of agreement of ``qsm_mean`` / ``qsm_median`` per pairwise comparison.
    missing_readings : DataFrame
        Every subject x reading with missing feature values (count, example features, reasons).
    wide : DataFrame
        The readings, index (lesion_type, case_id, lesion_id, feature), columns O1R1, O1R2, O2R1, O2R2.
    """

    observers: tuple[str, str]
    lesion_types: tuple[str, ...]
    threshold: float
    icc_form: str
    alpha: float
    cohort: pd.DataFrame
    table1: pd.DataFrame
    table2: pd.DataFrame
    table3: pd.DataFrame
    feature_agreement: pd.DataFrame
    bland_altman: pd.DataFrame
    missing_readings: pd.DataFrame
    wide: pd.DataFrame

    @property
    def radiomics_features(self) -> list[str]:
        """PyRadiomics feature names in the table, in class order."""
        table = self.feature_agreement
        return list(dict.fromkeys(table.loc[table["feature_class"].isin(RADIOMICS_CLASSES), "feature"]))


def _nan_icc(reason: str) -> dict:
    return {"icc": math.nan, "icc_ci_low": math.nan, "icc_ci_high": math.nan, "icc_reason": reason}


def _agreement_row(matrix: np.ndarray, comparison: Comparison, icc_form: str, alpha: float) -> dict:
    """CCC (Lin or overall) and ICC of one complete n x k matrix; NaN with reasons instead of errors."""
    row: dict = {}
    try:
        if comparison.pairwise:
            ccc_result = lin_ccc(matrix[:, 0], matrix[:, 1], alpha=alpha)
        else:
            ccc_result = overall_ccc(matrix, alpha=alpha)
        row.update(ccc=ccc_result.value, ccc_ci_low=ccc_result.ci_low, ccc_ci_high=ccc_result.ci_high,
                   ccc_reason=ccc_result.reason)
    except AgreementError as error:
        row.update(ccc=math.nan, ccc_ci_low=math.nan, ccc_ci_high=math.nan, ccc_reason=str(error))
    try:
        icc_result = icc(matrix, form=icc_form, alpha=alpha)
        row.update(icc=icc_result.value, icc_ci_low=icc_result.ci_low, icc_ci_high=icc_result.ci_high,
                   icc_reason=icc_result.reason)
    except AgreementError as error:
        row.update(_nan_icc(str(error)))
    return row


def _reason(*parts: str) -> str:
    return "; ".join(dict.fromkeys(p for p in parts if p))


def analyze_study(features: pd.DataFrame, *, threshold: float = 0.85, icc_form: str = "A,1",
                  alpha: float = 0.05, progress: ProgressCallback | None = None,
                  source: str = "feature table") -> StudyAgreement:
    """Agreement analysis of a two-observer, two-reading study (Park et al. 2023, Tables 1-3, Figure 3).

    Parameters
    ----------
    features : pandas.DataFrame
        Long feature table (see :func:`validate_feature_table`).
    threshold : float
        A feature is stable in a comparison when CCC > threshold and ICC > threshold (study: 0.85).
    icc_form : str
        ICC form used everywhere (one of :data:`ICC_FORMS`); for "Intra and inter" it is applied to all
        four readings.
    alpha : float
        1 - confidence level of every interval.
    progress : callable, optional
        ``progress(fraction, message)``; returning False cancels.
    source : str
        Name of the table in error messages.

    Returns
    -------
    StudyAgreement

    Raises
    ------
    AgreementError
        The table is malformed (see :func:`validate_feature_table`), no lesion type has three lesions, or
        not one CCC or ICC can be computed (e.g. every value is the same). Single statistics that cannot be
        computed are NaN with a ``reason`` instead.

    Notes
    -----
    O1 and O2 are the two observer IDs in sorted order. A subject is (case_id, lesion_id). For each
    comparison, subjects lacking any of its readings are dropped and counted (``n_dropped``). Pairwise
    comparisons use Lin's CCC; "Intra and inter" uses Barnhart's overall CCC of the four readings and the
    chosen ICC form computed over all four readings (for A,1: single measurement, k = 4). Percentages in
    Table 3 are of the PyRadiomics features in the table; "both types" counts features above the threshold
    in every lesion type.
    """
    if icc_form not in ICC_FORMS:
        raise AgreementError(f"ICC form must be one of {', '.join(ICC_FORMS)}; got {icc_form!r}")
    alpha = check_alpha(alpha)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise AgreementError(f"the stability threshold must be a number, got {threshold!r}") from None
    if not -1.0 < threshold < 1.0:
        raise AgreementError(f"the stability threshold must lie between -1 and 1, got {threshold}")

    notify(progress, 0.0, "checking the feature table")
    table = validate_feature_table(features, source=source)
    observers = tuple(sorted(set(table["observer"])))
    slot_of_observer = {observers[0]: 1, observers[1]: 2}
    table["slot"] = "O" + table["observer"].map(slot_of_observer).astype(str) + "R" + table["reading"].astype(str)
    lesion_types = ordered_lesion_types(table["lesion_type"])

    index = ["lesion_type", "case_id", "lesion_id", "feature"]
    wide = table.pivot(index=index, columns="slot", values="value").reindex(columns=list(_SLOTS))
    wide.columns.name = None
    wide = wide.sort_index()

    cohort = _cohort(table, lesion_types)
    if (cohort["n_lesions"] < MIN_SUBJECTS).all():
        counts = ", ".join(f"{row.lesion_type}: {row.n_lesions}" for row in cohort.itertuples(index=False))
        raise AgreementError(
            f"{source}: too few lesions to measure agreement ({counts}); every statistic needs at least "
            f"{MIN_SUBJECTS} lesions of one type, each read twice by both observers")
    table1 = _table1(table, observers, lesion_types)
    missing_readings = _missing_readings(table, wide)

    features_in_order = sorted(set(table["feature"]), key=_feature_sort_key)
    rows = []
    groups = [(lt, f) for lt in lesion_types for f in features_in_order]
    wide_groups = {key: frame.to_numpy(dtype=float)
                   for key, frame in wide.groupby(level=["lesion_type", "feature"], sort=False)}
    slot_index = {slot: i for i, slot in enumerate(_SLOTS)}
    for number, (lesion_type, feature) in enumerate(groups):
        if number % 20 == 0:
            notify(progress, 0.05 + 0.85 * number / max(len(groups), 1),
                   f"agreement of {feature} ({lesion_type})")
        values = wide_groups.get((lesion_type, feature))
        if values is None:
            continue
        for comparison in COMPARISONS:
            matrix_all = values[:, [slot_index[c] for c in comparison.columns]]
            complete = np.all(np.isfinite(matrix_all), axis=1)
            matrix = matrix_all[complete]
            row = dict(lesion_type=lesion_type, comparison=comparison.name, feature=feature,
                       feature_class=feature_class(feature), n_subjects=int(matrix_all.shape[0]),
                       n=int(matrix.shape[0]), n_dropped=int((~complete).sum()))
            if matrix.shape[0] < MIN_SUBJECTS:
                reason = (f"only {matrix.shape[0]} subject(s) with all readings of this comparison; at least "
                          f"{MIN_SUBJECTS} are needed")
                row.update(ccc=math.nan, ccc_ci_low=math.nan, ccc_ci_high=math.nan, ccc_reason=reason,
                           **_nan_icc(reason))
            else:
                row.update(_agreement_row(matrix, comparison, icc_form, alpha))
            rows.append(row)
    feature_agreement = pd.DataFrame(rows, columns=[
        "lesion_type", "comparison", "feature", "feature_class", "n_subjects", "n", "n_dropped",
        "ccc", "ccc_ci_low", "ccc_ci_high", "icc", "icc_ci_low", "icc_ci_high", "ccc_reason", "icc_reason"])
    feature_agreement["stable"] = ((feature_agreement["ccc"] > threshold)
                                   & (feature_agreement["icc"] > threshold))
    feature_agreement["reason"] = [_reason(a, b) for a, b in
                                   zip(feature_agreement["ccc_reason"], feature_agreement["icc_reason"])]
    feature_agreement = feature_agreement.drop(columns=["ccc_reason", "icc_reason"])

    notify(progress, 0.92, "QSM agreement tables")
    table2 = _table2(wide, lesion_types, icc_form, alpha)
    bland = _bland_altman_table(wide, lesion_types, alpha)
    table3 = _table3(feature_agreement, lesion_types, threshold)
    computed = feature_agreement[["ccc", "icc"]].notna().to_numpy().any()
    if not computed:
        reasons = feature_agreement["reason"].value_counts()
        raise AgreementError(
            f"{source}: no agreement statistic could be computed for any feature; most common reason: "
            f"{reasons.index[0] if len(reasons) else 'unknown'}")
    notify(progress, 1.0, "agreement analysis done")
    return StudyAgreement(observers=observers, lesion_types=lesion_types, threshold=threshold,
                          icc_form=icc_form, alpha=alpha, cohort=cohort, table1=table1, table2=table2,
                          table3=table3, feature_agreement=feature_agreement, bland_altman=bland,
                          missing_readings=missing_readings, wide=wide)


def _feature_sort_key(feature: str) -> tuple:
    order = ("qsm",) + RADIOMICS_CLASSES + ("other",)
    cls = feature_class(feature)
    return (order.index(cls), feature.lower())


def _cohort(table: pd.DataFrame, lesion_types: Sequence[str]) -> pd.DataFrame:
    rows = []
    for lesion_type in lesion_types:
        part = table[table["lesion_type"] == lesion_type]
        lesions = part[["case_id", "lesion_id"]].drop_duplicates()
        per_case = lesions.groupby("case_id").size()
        rows.append(dict(lesion_type=lesion_type, n_cases=int(per_case.size), n_lesions=int(len(lesions)),
                         n_bilateral_cases=int((per_case > 1).sum())))
    return pd.DataFrame(rows, columns=["lesion_type", "n_cases", "n_lesions", "n_bilateral_cases"])


def _table1(table: pd.DataFrame, observers: Sequence[str], lesion_types: Sequence[str]) -> pd.DataFrame:
    """Table 1 of the study: mean +- SD of qsm_mean and qsm_median per observer x reading x lesion type."""
    rows = []
    for feature in QSM_FEATURES:
        for lesion_type in lesion_types:
            for slot, observer in enumerate(observers, start=1):
                for reading in (1, 2):
                    values = table.loc[(table["feature"] == feature) & (table["lesion_type"] == lesion_type)
                                       & (table["observer"] == observer) & (table["reading"] == reading),
                                       "value"].dropna().to_numpy(dtype=float)
                    if values.size == 0:
                        continue
                    rows.append(dict(feature=feature, lesion_type=lesion_type, observer=f"O{slot}",
                                     observer_id=observer, reading=reading, n=int(values.size),
                                     mean_ppm=float(values.mean()),
                                     sd_ppm=float(values.std(ddof=1)) if values.size > 1 else math.nan))
    return pd.DataFrame(rows, columns=["feature", "lesion_type", "observer", "observer_id", "reading", "n",
                                       "mean_ppm", "sd_ppm"])


def _qsm_frames(wide: pd.DataFrame, lesion_types: Sequence[str]) -> dict[tuple[str, str], pd.DataFrame]:
    """The readings of ``qsm_mean`` / ``qsm_median`` per (feature, lesion type) present, feature-major order."""
    frames = {}
    features = set(wide.index.get_level_values("feature"))
    for feature in QSM_FEATURES:
        if feature not in features:
            continue
        for lesion_type in lesion_types:
            try:
                frames[(feature, lesion_type)] = wide.xs((lesion_type, feature), level=("lesion_type", "feature"))
            except KeyError:
                continue
    return frames


def _table2(wide: pd.DataFrame, lesion_types: Sequence[str], icc_form: str, alpha: float) -> pd.DataFrame:
    """Table 2 of the study: ICC and wCV (with 95 % CIs) of qsm_mean / qsm_median per comparison."""
    rows = []
    frames = _qsm_frames(wide, lesion_types)
    for feature in QSM_FEATURES:
        for comparison in COMPARISONS:
            for lesion_type in lesion_types:
                frame = frames.get((feature, lesion_type))
                if frame is None:
                    continue
                matrix_all = frame[list(comparison.columns)].to_numpy(dtype=float)
                complete = np.all(np.isfinite(matrix_all), axis=1)
                matrix = matrix_all[complete]
                row = dict(feature=feature, comparison=comparison.name, lesion_type=lesion_type,
                           n=int(matrix.shape[0]), n_dropped=int((~complete).sum()))
                reasons = []
                for key, compute in (
                        ("icc", lambda m: icc(m, form=icc_form, alpha=alpha)),
                        ("wcv", lambda m: wcv(m, method="rms", alpha=alpha)),
                        ("wcv_pooled", lambda m: wcv(m, method="pooled", alpha=alpha)),
                        ("ccc", lambda m: (lin_ccc(m[:, 0], m[:, 1], alpha=alpha) if m.shape[1] == 2
                                           else overall_ccc(m, alpha=alpha)))):
                    try:
                        result = compute(matrix)
                        row.update({key: result.value, f"{key}_ci_low": result.ci_low,
                                    f"{key}_ci_high": result.ci_high})
                        if key == "wcv":
                            row["wcv_shift"] = result.shift
                            row["wcv_ci_method"] = result.ci_method
                        reasons.append(result.reason)
                    except AgreementError as error:
                        row.update({key: math.nan, f"{key}_ci_low": math.nan, f"{key}_ci_high": math.nan})
                        reasons.append(str(error))
                row["reason"] = _reason(*reasons)
                rows.append(row)
    columns = ["feature", "comparison", "lesion_type", "n", "n_dropped", "icc", "icc_ci_low", "icc_ci_high",
               "wcv", "wcv_ci_low", "wcv_ci_high", "wcv_shift", "wcv_pooled", "wcv_pooled_ci_low",
               "wcv_pooled_ci_high", "ccc", "ccc_ci_low", "ccc_ci_high", "wcv_ci_method", "reason"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["wcv_shift"] = frame["wcv_shift"].fillna(0.0)
    frame["wcv_ci_method"] = frame["wcv_ci_method"].fillna("")
    return frame


def _bland_altman_table(wide: pd.DataFrame, lesion_types: Sequence[str], alpha: float) -> pd.DataFrame:
    rows = []
    for (feature, lesion_type), frame in _qsm_frames(wide, lesion_types).items():
        for comparison in COMPARISONS:
            if not comparison.pairwise:
                continue
            first, second = comparison.columns
            pair = frame[[first, second]].dropna()
            row = dict(feature=feature, lesion_type=lesion_type, comparison=comparison.name,
                       difference=f"{first} - {second}", n=int(len(pair)))
            try:
                result = bland_altman(pair[first], pair[second], alpha=alpha)
                row.update({f.name: getattr(result, f.name) for f in dataclasses.fields(result)
                            if f.name not in ("n", "alpha")})
                row["reason"] = ""
            except AgreementError as error:
                row["reason"] = str(error)
            rows.append(row)
    columns = ["feature", "lesion_type", "comparison", "difference", "n", "bias", "bias_ci_low",
               "bias_ci_high", "sd", "loa_low", "loa_high", "loa_low_ci_low", "loa_low_ci_high",
               "loa_high_ci_low", "loa_high_ci_high", "multiplier", "reason"]
    return pd.DataFrame(rows, columns=columns)


def _table3(agreement: pd.DataFrame, lesion_types: Sequence[str], threshold: float) -> pd.DataFrame:
    """Table 3 of the study: stable radiomic features per comparison x lesion type (and both types)."""
    radiomic = agreement[agreement["feature_class"].isin(RADIOMICS_CLASSES)]
    rows = []
    for comparison in COMPARISONS:
        part = radiomic[radiomic["comparison"] == comparison.name]
        above = {}
        for lesion_type in lesion_types:
            sub = part[part["lesion_type"] == lesion_type]
            n_features = int(sub["feature"].nunique())
            ccc_above = set(sub.loc[sub["ccc"] > threshold, "feature"])
            icc_above = set(sub.loc[sub["icc"] > threshold, "feature"])
            above[lesion_type] = (ccc_above, icc_above, n_features)
            rows.append(_table3_row(comparison.name, lesion_type, n_features, ccc_above, icc_above,
                                    float(sub["ccc"].median()) if sub["ccc"].notna().any() else math.nan,
                                    float(sub["icc"].median()) if sub["icc"].notna().any() else math.nan))
        if len(lesion_types) > 1:
            ccc_all = set.intersection(*(a[0] for a in above.values()))
            icc_all = set.intersection(*(a[1] for a in above.values()))
            n_features = int(part["feature"].nunique())
            rows.append(_table3_row(comparison.name, "both types", n_features, ccc_all, icc_all, math.nan,
                                    math.nan))
    # Features above the threshold in all five comparisons (the study's "9 and 19 reproducible features").
    every = {}
    for lesion_type in lesion_types:
        sub = radiomic[radiomic["lesion_type"] == lesion_type]
        n_features = int(sub["feature"].nunique())
        counts = sub.assign(ccc_ok=sub["ccc"] > threshold, icc_ok=sub["icc"] > threshold).groupby("feature")
        ccc_all = set(counts["ccc_ok"].sum()[lambda s: s == len(COMPARISONS)].index)
        icc_all = set(counts["icc_ok"].sum()[lambda s: s == len(COMPARISONS)].index)
        stable_all = set(counts["stable"].sum()[lambda s: s == len(COMPARISONS)].index)
        every[lesion_type] = (ccc_all, icc_all, stable_all)
        row = _table3_row("All comparisons", lesion_type, n_features, ccc_all, icc_all, math.nan, math.nan)
        row.update(n_stable=len(stable_all),
                   pct_stable=100.0 * len(stable_all) / n_features if n_features else math.nan)
        rows.append(row)
    if len(lesion_types) > 1:
        n_features = int(radiomic["feature"].nunique())
        ccc_all, icc_all, stable_all = (set.intersection(*(e[i] for e in every.values())) for i in range(3))
        row = _table3_row("All comparisons", "both types", n_features, ccc_all, icc_all, math.nan, math.nan)
        row.update(n_stable=len(stable_all),
                   pct_stable=100.0 * len(stable_all) / n_features if n_features else math.nan)
        rows.append(row)
    columns = ["comparison", "lesion_type", "n_features", "n_ccc_above", "pct_ccc_above", "n_icc_above",
               "pct_icc_above", "n_stable", "pct_stable", "median_ccc", "median_icc"]
    return pd.DataFrame(rows, columns=columns)


def _table3_row(comparison: str, lesion_type: str, n_features: int, ccc_above: set, icc_above: set,
                median_ccc: float, median_icc: float) -> dict:
    stable = ccc_above & icc_above

    def pct(count: int) -> float:
        return 100.0 * count / n_features if n_features else math.nan

    return dict(comparison=comparison, lesion_type=lesion_type, n_features=n_features,
                n_ccc_above=len(ccc_above), pct_ccc_above=pct(len(ccc_above)), n_icc_above=len(icc_above),
                pct_icc_above=pct(len(icc_above)), n_stable=len(stable), pct_stable=pct(len(stable)),
                median_ccc=median_ccc, median_icc=median_icc)


def _missing_readings(table: pd.DataFrame, wide: pd.DataFrame) -> pd.DataFrame:
    """Every subject x reading with at least one missing feature value, with the recorded reasons."""
    columns = ["lesion_type", "case_id", "lesion_id", "observer", "observer_id", "reading", "n_missing",
               "n_features", "features", "reasons"]
    slot_to_observer = {}
    for observer, slot in table[["observer", "slot"]].drop_duplicates().itertuples(index=False):
        slot_to_observer[slot[:2]] = observer
    long = wide.reset_index().melt(id_vars=["lesion_type", "case_id", "lesion_id", "feature"],
                                   value_vars=list(_SLOTS), var_name="slot", value_name="value")
    n_features = long.groupby(["lesion_type", "case_id", "lesion_id", "slot"])["feature"].transform("nunique")
    long["n_features"] = n_features
    absent = long[long["value"].isna()]
    if absent.empty:
        return pd.DataFrame(columns=columns)
    reasons = table.set_index(["lesion_type", "case_id", "lesion_id", "feature", "slot"])["reason"]
    absent = absent.join(reasons, on=["lesion_type", "case_id", "lesion_id", "feature", "slot"])
    absent["reason"] = absent["reason"].fillna("no row in the feature table")
    rows = []
    for (lesion_type, case_id, lesion_id, slot), group in absent.groupby(
            ["lesion_type", "case_id", "lesion_id", "slot"], sort=True):
        names = list(group["feature"])
        rows.append(dict(lesion_type=lesion_type, case_id=case_id, lesion_id=lesion_id, observer=slot[:2],
                         observer_id=slot_to_observer.get(slot[:2], ""), reading=int(slot[3]),
                         n_missing=len(names), n_features=int(group["n_features"].iloc[0]),
                         features=", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5
                                                          else ""),
                         reasons="; ".join(sorted(set(group["reason"])))))
    return pd.DataFrame(rows, columns=columns)
