"""The long feature table: its columns, feature names and classes, its checks, and reading and writing it.

Radiomics writes the table (one row per reading x lesion x feature) and the agreement analysis reads it;
both take the schema from here. Columns: ``case_id, lesion_id, lesion_type, observer, reading, feature,
value`` (required), ``reason`` (why a value is missing) and ``note`` (a remark on the ROI). Values of
``qsm_mean`` / ``qsm_median`` are χ in ppm relative to the reading's CSF.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import AgreementError, InputError
from .fileio import atomic_output
from .terminology import LESION_TYPES

__all__ = [
    "REQUIRED_COLUMNS",
    "FEATURE_COLUMNS",
    "QSM_FEATURES",
    "RADIOMICS_CLASSES",
    "LESION_TYPES",
    "feature_class",
    "ordered_lesion_types",
    "validate_feature_table",
    "complete_table",
    "read_feature_csv",
    "write_feature_table",
]

REQUIRED_COLUMNS = ("case_id", "lesion_id", "lesion_type", "observer", "reading", "feature", "value")

# The columns radiomics writes: the required ones, then why a value is missing and a remark on the ROI.
FEATURE_COLUMNS = [*REQUIRED_COLUMNS, "reason", "note"]

QSM_FEATURES = ("qsm_mean", "qsm_median")

# PyRadiomics feature names are <image type>_<feature class>_<feature>, e.g. original_glcm_Contrast.
RADIOMICS_CLASSES = ("firstorder", "shape", "shape2D", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
_RADIOMICS_NAME = re.compile(r"^(?P<image>[A-Za-z0-9-]+(?:-[A-Za-z0-9.]+)*)_(?P<cls>"
                             + "|".join(RADIOMICS_CLASSES) + r")_(?P<name>\w+)$")

_ROI_KEY = ["case_id", "lesion_id", "lesion_type", "observer", "reading"]


def feature_class(feature: str) -> str:
    """Feature class of a feature name: a PyRadiomics class (``"glcm"``...), ``"qsm"`` or ``"other"``."""
    if feature in QSM_FEATURES:
        return "qsm"
    match = _RADIOMICS_NAME.match(feature)
    return match.group("cls") if match else "other"


def ordered_lesion_types(found: Iterable[str]) -> tuple[str, ...]:
    """Lesion types in table order: the study's (:data:`LESION_TYPES`) first, any others alphabetically."""
    found = set(found)
    return tuple(t for t in LESION_TYPES if t in found) + tuple(sorted(found - set(LESION_TYPES)))


def _describe_rows(frame: pd.DataFrame, rows: Iterable, columns: Sequence[str], limit: int = 3) -> str:
    parts = []
    for index in list(rows)[:limit]:
        row = frame.loc[index]
        shown = ", ".join(f"{c}={row[c]!r}" if isinstance(row[c], str) else f"{c}={row[c]}" for c in columns)
        parts.append(f"row {int(index) + 2} ({shown})")
    return "; ".join(parts)


def validate_feature_table(features: pd.DataFrame, *, source: str = "feature table") -> pd.DataFrame:
    """Check a long feature table and return a clean copy.

    Parameters
    ----------
    features : pandas.DataFrame
        Columns ``case_id, lesion_id, lesion_type, observer, reading, feature, value`` (more allowed,
        e.g. ``reason``).
    source : str
        Name of the table (usually its file path) used in error messages.

    Returns
    -------
    pandas.DataFrame
        IDs as strings, ``reading`` as int, ``value`` as float (non-finite values become NaN with a
        reason), a ``reason`` column.

    Raises
    ------
    AgreementError
        Missing columns, text where numbers belong, duplicate rows, readings other than 1 and 2, a number
        of observers other than two, or a subject whose lesion type differs between readings. Row numbers
        in messages are CSV line numbers (header = line 1).
    """
    if not isinstance(features, pd.DataFrame):
        raise AgreementError(f"{source}: expected a table (pandas DataFrame), got {type(features).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in features.columns]
    if missing:
        raise AgreementError(
            f"{source}: missing column(s) {', '.join(repr(c) for c in missing)}; a feature table needs the "
            f"columns {', '.join(REQUIRED_COLUMNS)}")
    if features.empty:
        raise AgreementError(f"{source}: the feature table has no rows")
    table = features.reset_index(drop=True).copy()
    for column in ("case_id", "lesion_id", "lesion_type", "observer", "feature"):
        empty = table[column].isna() | (table[column].astype(str).str.strip() == "")
        if empty.any():
            raise AgreementError(f"{source}: column {column!r} is empty in {int(empty.sum())} row(s): "
                                 + _describe_rows(table, np.flatnonzero(empty), REQUIRED_COLUMNS[:6]))
        table[column] = table[column].astype(str).str.strip()
    table["lesion_type"] = table["lesion_type"].str.lower()

    reading = pd.to_numeric(table["reading"], errors="coerce")
    bad = reading.isna() | (reading != np.round(reading))
    if bad.any():
        raise AgreementError(f"{source}: column 'reading' must hold whole numbers (1, 2); "
                             + _describe_rows(table, np.flatnonzero(bad), ("observer", "reading")))
    table["reading"] = reading.astype(int)
    other = ~table["reading"].isin((1, 2))
    if other.any():
        raise AgreementError(
            f"{source}: this study design compares readings 1 and 2 of each observer; found reading(s) "
            f"{sorted(set(table.loc[other, 'reading']))} ("
            + _describe_rows(table, np.flatnonzero(other), ("case_id", "observer", "reading")) + ")")

    raw = table["value"]
    value = pd.to_numeric(raw, errors="coerce")
    text = value.isna() & raw.notna() & ~raw.astype(str).str.strip().str.lower().isin(("", "nan", "na"))
    if text.any():
        raise AgreementError(
            f"{source}: column 'value' holds text where numbers belong in {int(text.sum())} row(s): "
            + _describe_rows(table, np.flatnonzero(text), ("case_id", "observer", "reading", "feature",
                                                              "value")))
    value = value.astype(float)
    if "reason" not in table.columns:
        table["reason"] = ""
    table["reason"] = table["reason"].astype(object).fillna("").astype(str)  # an empty CSV column reads as float
    infinite = np.isinf(value)
    table.loc[infinite & (table["reason"] == ""), "reason"] = "non-finite value"
    table["value"] = value.where(~infinite, np.nan)
    table.loc[table["value"].isna() & (table["reason"] == ""), "reason"] = "missing value"

    key = ["case_id", "lesion_id", "observer", "reading", "feature"]
    duplicated = table.duplicated(key, keep=False)
    if duplicated.any():
        raise AgreementError(
            f"{source}: {int(duplicated.sum())} rows repeat the same case, lesion, observer, reading and "
            "feature; each measurement must appear once: "
            + _describe_rows(table, np.flatnonzero(duplicated), key))

    types_per_subject = table.groupby(["case_id", "lesion_id"])["lesion_type"].nunique()
    mixed = types_per_subject[types_per_subject > 1]
    if not mixed.empty:
        case, lesion = mixed.index[0]
        found = sorted(set(table.loc[(table["case_id"] == case) & (table["lesion_id"] == lesion),
                                     "lesion_type"]))
        raise AgreementError(f"{source}: lesion {lesion!r} of case {case!r} has different lesion types in "
                             f"different rows ({', '.join(found)}); one lesion has one type")

    observers = sorted(set(table["observer"]))
    if len(observers) != 2:
        raise AgreementError(
            f"{source}: this study design needs exactly two observers; found {len(observers)} "
            f"({', '.join(observers)})")
    return table


def complete_table(table: pd.DataFrame) -> pd.DataFrame:
    """Give every ROI a row for every feature name any ROI has (names of filtered image types).

    A name an ROI lacks gets a NaN value with the reason "not returned by PyRadiomics for this ROI".
    """
    if table.empty:
        return table
    names = pd.unique(table["feature"])
    per_roi = table.groupby(_ROI_KEY, sort=False)["feature"].nunique()
    if (per_roi == len(names)).all():
        return table
    rois = table[_ROI_KEY].drop_duplicates()
    full = rois.merge(pd.DataFrame({"feature": names}), how="cross")
    table = full.merge(table, on=[*_ROI_KEY, "feature"], how="left")
    missing = table["value"].isna() & table["reason"].isna()
    table.loc[missing, "reason"] = "not returned by PyRadiomics for this ROI"
    table[["reason", "note"]] = table[["reason", "note"]].fillna("")
    return table[FEATURE_COLUMNS]


def read_feature_csv(path) -> pd.DataFrame:
    """Read a long feature table from CSV, keeping IDs as text (``"007"`` stays ``"007"``).

    Raises
    ------
    InputError
        The file does not exist, is empty or is not a readable CSV.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"feature table {path} does not exist")
    try:
        return pd.read_csv(path, dtype={"case_id": str, "lesion_id": str, "observer": str,
                                        "lesion_type": str, "feature": str})
    except pd.errors.EmptyDataError:
        raise InputError(f"feature table {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        raise InputError(f"cannot read feature table {path} as CSV: {error}") from None


def write_feature_table(table: pd.DataFrame, path) -> Path:
    """Write a long feature table atomically: ``.xlsx`` as a workbook, anything else as CSV.

    The table is written to a temporary file next to ``path`` and renamed onto it
    (:func:`~QSMReproducibilityLib.fileio.atomic_output`), so a reader never sees half a table and a
    failure leaves an earlier table as it was. Returns ``path``.
    """
    path = Path(path)
    with atomic_output(path) as tmp:
        if path.suffix.lower() == ".xlsx":
            table.to_excel(tmp, index=False, engine="openpyxl")
        else:
            table.to_csv(tmp, index=False)
    return path
