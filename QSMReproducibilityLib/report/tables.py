"""The report's tables as files: CSV and sheet names, the workbook ``agreement.xlsx``, settings and versions."""

from __future__ import annotations

import importlib.metadata
import io
import platform
from typing import Mapping

import pandas as pd

from .. import __version__
from ..agreement import StudyAgreement

# Output key -> (CSV file name, XLSX sheet name, StudyAgreement attribute).
TABLES = (
    ("table1", "table1_qsm_values.csv", "Table 1 QSM values", "table1"),
    ("table2", "table2_qsm_agreement.csv", "Table 2 QSM agreement", "table2"),
    ("table3", "table3_stable_features.csv", "Table 3 stable features", "table3"),
    ("feature_agreement", "feature_agreement.csv", "Feature agreement", "feature_agreement"),
    ("bland_altman", "bland_altman.csv", "Bland-Altman", "bland_altman"),
    ("missing_readings", "missing_readings.csv", "Missing readings", "missing_readings"),
)
CSV_FILES = tuple(t[1] for t in TABLES)
XLSX_SHEETS = tuple(t[2] for t in TABLES) + ("Settings",)

ICC_FORM_TEXT = {
    "A,1": "two-way random effects, absolute agreement, single measurement (ICC(A,1); Shrout & Fleiss ICC(2,1))",
    "C,1": "two-way, consistency, single measurement (ICC(C,1); Shrout & Fleiss ICC(3,1))",
    "1,1": "one-way random effects, single measurement (ICC(1,1))",
    "A,k": "two-way random effects, absolute agreement, mean of k readings (ICC(A,k))",
    "C,k": "two-way, consistency, mean of k readings (ICC(C,k))",
    "1,k": "one-way random effects, mean of k readings (ICC(1,k))",
}


def safe_name(text: str) -> str:
    """``text`` as a file name: letters, digits, ``-_.`` kept, anything else ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def wcv_interval_text(study: StudyAgreement) -> str:
    """How the wCV intervals of Table 2 were computed (empty when Table 2 has none)."""
    methods = set(study.table2.get("wcv_ci_method", pd.Series(dtype=str)).dropna()) - {""}
    return next(iter(methods), "")


def settings_frame(study: StudyAgreement, settings: Mapping) -> pd.DataFrame:
    rows = [("Stability threshold", f"CCC and ICC > {study.threshold:g}"),
            ("ICC form", f"{study.icc_form}: {ICC_FORM_TEXT[study.icc_form]} (McGraw & Wong 1996)"),
            ("Confidence level", f"{100 * (1 - study.alpha):g} %"),
            ("ICC interval", "F distribution (McGraw & Wong 1996, Table 7)"
             + ("; Satterthwaite degrees of freedom" if study.icc_form.startswith("A") else "")),
            ("CCC interval", "Lin's CCC: Fisher z, Lin (1989, 2000) variance; overall CCC: delete-one jackknife "
                             "on Fisher z, t(n - 1)"),
            ("wCV interval", wcv_interval_text(study) or "BCa bootstrap, subjects resampled"),
            ("Observer O1", study.observers[0]), ("Observer O2", study.observers[1])]
    rows += [(str(k), plain_text(v)) for k, v in settings.items()]
    rows += [(f"Software: {k}", v) for k, v in software_versions().items()]
    return pd.DataFrame(rows, columns=["setting", "value"])


def plain_text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(plain_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def xlsx_bytes(study: StudyAgreement, settings: Mapping) -> bytes:
    """The workbook ``agreement.xlsx``: one sheet per table and a Settings sheet."""
    from openpyxl.utils import get_column_letter

    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        frames = [(sheet, getattr(study, attribute)) for _k, _csv, sheet, attribute in TABLES]
        frames.append(("Settings", settings_frame(study, settings)))
        for sheet, frame in frames:
            frame.to_excel(writer, sheet_name=sheet, index=False)
            worksheet = writer.sheets[sheet]
            worksheet.freeze_panes = "A2"
            for number, column in enumerate(frame.columns, start=1):
                sample = frame[column].head(200).map(lambda v: len(str(v)))
                width = max([len(str(column))] + ([int(sample.max())] if len(sample) else []))
                worksheet.column_dimensions[get_column_letter(number)].width = min(width + 2, 60)
    return buffer.getvalue()


def software_versions() -> dict[str, str]:
    """Versions of Python and the packages the analysis used (PyRadiomics if installed)."""
    versions = {"Python": platform.python_version(), "QSMReproducibility": __version__}
    for label, distribution in (("numpy", "numpy"), ("scipy", "scipy"), ("pandas", "pandas"),
                                ("matplotlib", "matplotlib"), ("openpyxl", "openpyxl"),
                                ("PyRadiomics", "pyradiomics")):
        try:
            versions[label] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[label] = _imported_version(distribution)
    return versions


def _imported_version(distribution: str) -> str:
    module = {"pyradiomics": "radiomics"}.get(distribution, distribution)
    try:
        return str(getattr(__import__(module), "__version__", "installed"))
    except Exception:  # noqa: BLE001 - any import failure means "not available" here
        return "not installed"
