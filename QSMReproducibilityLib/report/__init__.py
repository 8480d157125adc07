"""The study report: Tables 1-3, Figure 3 and Bland-Altman plots as HTML, XLSX, CSV and PNG.

:func:`write_report` runs :func:`~QSMReproducibilityLib.agreement.analyze_study` on a long feature table and
writes into one folder:

- ``report.html`` -- self-contained (inline CSS, figures embedded as base64 PNG, no external URLs), opens
  offline in any browser;
- ``agreement.xlsx`` -- one sheet per table;
- one CSV per table (``table1_qsm_values.csv``, ``table2_qsm_agreement.csv``, ``table3_stable_features.csv``,
  ``feature_agreement.csv``, ``bland_altman.csv``, ``missing_readings.csv``);
- ``figure3_heatmap.png`` and ``bland_altman_<lesion type>.png``.

:mod:`QSMReproducibilityLib.cli.agreement` is its command, ``qsmrepro agreement FEATURES.csv -o DIR``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..agreement import analyze_study
from ..errors import InputError
from ..fileio import publish_folder, staging_folder
from ..progress import ProgressCallback, notify, sub_progress
from .figures import bland_altman_png, heatmap_png
from .html import render_html
from .tables import TABLES, CSV_FILES, XLSX_SHEETS, safe_name, software_versions, xlsx_bytes

__all__ = ["write_report", "render_html", "software_versions", "CSV_FILES", "XLSX_SHEETS"]


def write_report(features: pd.DataFrame, out_dir, *, settings: dict | None = None, threshold: float = 0.85,
                 icc_form: str = "A,1", progress: ProgressCallback | None = None,
                 source: str = "feature table") -> dict[str, Path]:
    """Analyse a long feature table and write the study report into ``out_dir``.

    Parameters
    ----------
    features : pandas.DataFrame
        Long feature table: ``case_id, lesion_id, lesion_type, observer, reading, feature, value`` (+ an
        optional ``reason`` column for missing values).
    out_dir : str or Path
        Output folder (created if needed; files of the same name are replaced, other files are left alone).
    settings : dict, optional
        Acquisition, reconstruction and extraction settings to list in the report (name -> value).
    threshold : float
        Stability threshold: a feature is stable when CCC and ICC exceed it (study: 0.85).
    icc_form : str
        ICC form ("1,1", "A,1", "C,1", "1,k", "A,k", "C,k"); the study's is "A,1" (two-way random effects,
        absolute agreement, single measurement).
    progress : callable, optional
        ``progress(fraction, message)``; returning False cancels (raises ``Cancelled``).
    source : str
        Name of the feature table (e.g. its path) in error messages.

    Returns
    -------
    dict[str, Path]
        ``"report_html"``, ``"agreement_xlsx"``, one key per table CSV (``"table1"``, ``"table2"``, ``"table3"``,
        ``"feature_agreement"``, ``"bland_altman"``, ``"missing_readings"``), ``"figure3"`` and
        ``"bland_altman_<lesion type>"`` for the PNG figures.

    Raises
    ------
    AgreementError
        The table cannot be analysed (see :func:`~QSMReproducibilityLib.agreement.analyze_study`).
    InputError
        The output folder cannot be written.

    Notes
    -----
    Nothing is written until every table, figure and document has been computed; the files are then
    written into a hidden staging folder next to ``out_dir`` and moved into place, so a failure or a
    cancellation leaves no partial report behind.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"cannot write the report into {out}: it exists and is not a folder")
    settings = dict(settings or {})

    study = analyze_study(features, threshold=threshold, icc_form=icc_form, source=source,
                          progress=sub_progress(progress, 0.0, 0.45))

    notify(progress, 0.5, "drawing Figure 3 (feature heatmap)")
    figures: dict[str, bytes] = {"figure3": heatmap_png(study.feature_agreement, study.lesion_types,
                                                        study.threshold, study.icc_form)}
    for number, lesion_type in enumerate(study.lesion_types):
        notify(progress, 0.6 + 0.1 * number / max(len(study.lesion_types), 1),
               f"drawing Bland-Altman plots ({lesion_type})")
        if "qsm_mean" in set(study.wide.index.get_level_values("feature")):
            figures[f"bland_altman_{lesion_type}"] = bland_altman_png(study.wide, study.bland_altman,
                                                                      lesion_type, "qsm_mean")
    file_names = {"figure3": "figure3_heatmap.png"}
    file_names.update({key: f"{safe_name(key)}.png" for key in figures if key != "figure3"})
    contents: dict[str, tuple[str, bytes]] = {key: (file_names[key], png) for key, png in figures.items()}

    notify(progress, 0.75, "tables (CSV, XLSX)")
    for key, csv_name, _sheet, attribute in TABLES:
        contents[key] = (csv_name, getattr(study, attribute).to_csv(index=False).encode("utf-8"))
    contents["agreement_xlsx"] = ("agreement.xlsx", xlsx_bytes(study, settings))

    notify(progress, 0.85, "report.html")
    document = render_html(study, figures, settings=settings)
    contents["report_html"] = ("report.html", document.encode("utf-8"))

    notify(progress, 0.95, f"writing the report into {out}")
    _publish(out, dict(contents.values()))
    notify(progress, 1.0, "report written")
    return {key: out / name for key, (name, _data) in contents.items()}


def _publish(out: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (name -> bytes) into ``out`` through a staging folder beside it
    (:func:`~QSMReproducibilityLib.fileio.publish_folder`)."""
    try:
        staging = staging_folder(out)
    except OSError as error:
        raise InputError(f"cannot create the report folder {out}: {error.strerror or error}") from None
    try:
        publish_folder(staging, out, files)
    except OSError as error:
        raise InputError(f"cannot write the report into {out}: {error.strerror or error}") from None
