"""Figures of the agreement report: the feature-stability heatmap (Figure 3 of the study) and
Bland-Altman plots of the mean QSM value.

Every function returns PNG bytes. Figures are drawn on matplotlib's Agg canvas through the object API
(``Figure`` + ``FigureCanvasAgg``), never through pyplot, so no GUI backend is touched and the global
backend of the host application (e.g. 3D Slicer) is left as it is.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from .agreement import COMPARISONS, RADIOMICS_CLASSES

CLASS_LABELS = {
    "firstorder": "First order", "shape": "Shape", "shape2D": "Shape 2D", "glcm": "GLCM", "glrlm": "GLRLM",
    "glszm": "GLSZM", "gldm": "GLDM", "ngtdm": "NGTDM",
}
LESION_LABELS = {"hematoma": "Dissecting intramural hematoma", "calcification": "Atherosclerotic calcification"}

STABLE_COLOR = "#1f63b4"
MISSING_COLOR = "#f2d4cf"
_VALUE_CMAP = LinearSegmentedColormap.from_list("agreement", ["#ffffff", "#d9dde3", "#8a94a3", "#2e3440"])
_DPI = 110


def lesion_label(lesion_type: str) -> str:
    """Readable name of a lesion type."""
    return LESION_LABELS.get(lesion_type, lesion_type.capitalize())


def feature_label(feature: str) -> str:
    """Short feature name for axes: ``original_glcm_Contrast`` -> ``Contrast``."""
    parts = feature.split("_", 2)
    return parts[2] if len(parts) == 3 else feature


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure)
    figure.savefig(buffer, format="png", dpi=_DPI, facecolor="white")
    return buffer.getvalue()


def heatmap_png(feature_agreement: pd.DataFrame, lesion_types: Sequence[str], threshold: float,
                icc_form: str) -> bytes:
    """Figure 3 of the study: CCC and ICC of every radiomic feature in every comparison.

    Rows are the PyRadiomics features grouped by class; columns are lesion type x statistic (CCC, ICC) x
    comparison. Cells are shaded by value (0 white to 1 dark); cells of features that are stable in that
    comparison (CCC and ICC > threshold) are blue, as in the study's figure; cells that could not be
    computed are pale red.

    Parameters
    ----------
    feature_agreement : DataFrame
        ``StudyAgreement.feature_agreement``.
    lesion_types : sequence of str
    threshold : float
    icc_form : str
        Shown in the column header.

    Returns
    -------
    bytes
        PNG image.
    """
    radiomic = feature_agreement[feature_agreement["feature_class"].isin(RADIOMICS_CLASSES)]
    features = list(dict.fromkeys(radiomic["feature"]))
    classes = [radiomic.loc[radiomic["feature"] == f, "feature_class"].iloc[0] for f in features]
    comparisons = [c.name for c in COMPARISONS]
    columns = [(lt, stat, comp) for lt in lesion_types for stat in ("ccc", "icc") for comp in comparisons]
    n_rows, n_cols = max(len(features), 1), len(columns)

    values = np.full((n_rows, n_cols), np.nan)
    stable = np.zeros((n_rows, n_cols), dtype=bool)
    if features:
        indexed = radiomic.set_index(["feature", "lesion_type", "comparison"])
        row_of = {f: i for i, f in enumerate(features)}
        for j, (lt, stat, comp) in enumerate(columns):
            try:
                block = indexed.xs((lt, comp), level=("lesion_type", "comparison"))
            except KeyError:
                continue
            rows = block.index.map(row_of)
            values[rows, j] = block[stat].to_numpy(dtype=float)
            stable[rows, j] = block["stable"].to_numpy(dtype=bool)

    height = 2.6 + 0.135 * n_rows
    figure = Figure(figsize=(10.5, height))
    top = 1 - 1.45 / height
    bottom = 0.95 / height
    ax = figure.add_axes((0.27, bottom, 0.60, top - bottom))
    ax.imshow(np.clip(values, 0, 1), cmap=_VALUE_CMAP, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.imshow(np.ma.masked_where(~stable, np.ones_like(values)), cmap=ListedColormap([STABLE_COLOR]),
              vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.imshow(np.ma.masked_where(~np.isnan(values), np.ones_like(values)), cmap=ListedColormap([MISSING_COLOR]),
              vmin=0, vmax=1, aspect="auto", interpolation="nearest")

    if not features:
        ax.text(0.5, 0.5, "no PyRadiomics features in the feature table", transform=ax.transAxes, ha="center",
                va="center", fontsize=9, color="#52606d")

    # Thin white grid between cells, heavier lines between statistic groups and lesion types.
    ax.set_xticks(np.arange(-0.5, n_cols, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n_rows, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.35)
    ax.tick_params(which="minor", length=0)
    group = len(comparisons)
    for j in range(group, n_cols, group):
        width = 2.6 if j % (2 * group) == 0 else 1.4
        ax.axvline(j - 0.5, color="white", linewidth=width)

    ax.set_yticks(range(len(features)))
    ax.set_yticklabels([feature_label(f) for f in features], fontsize=6.3)
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels([comp for (_lt, _stat, comp) in columns], rotation=90, fontsize=6.8)
    ax.tick_params(axis="x", top=True, labeltop=True, bottom=False, labelbottom=False, length=0, pad=2)
    ax.tick_params(axis="y", length=0, pad=2)
    for spine in ax.spines.values():
        spine.set_visible(False)

    # Feature-class bands: separator lines and labels on the right.
    blend_y = blended_transform_factory(ax.transAxes, ax.transData)
    start = 0
    for i in range(1, len(classes) + 1):
        if i == len(classes) or classes[i] != classes[start]:
            if i < len(classes):
                ax.axhline(i - 0.5, color="#111111", linewidth=0.9)
            ax.plot([1.012, 1.012], [start - 0.35, i - 0.65], transform=blend_y, color="#444444",
                    linewidth=1.0, clip_on=False)
            ax.text(1.025, (start + i - 1) / 2, CLASS_LABELS.get(classes[start], classes[start]),
                    transform=blend_y, va="center", ha="left", fontsize=7.5, fontweight="bold",
                    color="#222222")
            start = i

    # Column group headers above the comparison labels.
    blend_x = blended_transform_factory(ax.transData, ax.transAxes)
    for g, lt in enumerate(lesion_types):
        first = g * 2 * group
        ax.text(first + group - 0.5, 1 + 0.95 / (top - bottom) / height, lesion_label(lt), transform=blend_x,
                ha="center", va="bottom", fontsize=8.5, fontweight="bold")
        for s, stat in enumerate(("CCC", f"ICC ({icc_form})")):
            center = first + s * group + (group - 1) / 2
            ax.text(center, 1 + 0.80 / (top - bottom) / height, stat, transform=blend_x, ha="center",
                    va="bottom", fontsize=7.5, color="#333333")

    # Colour scale and legend below the map.
    cax = figure.add_axes((0.27, 0.30 / height, 0.25, 0.12 / height))
    gradient = np.linspace(0, 1, 256)[None, :]
    cax.imshow(gradient, cmap=_VALUE_CMAP, aspect="auto", extent=(0, 1, 0, 1))
    cax.set_yticks([])
    cax.set_xticks([0, 0.5, 1])
    cax.tick_params(labelsize=6.5, length=2)
    cax.set_title("CCC / ICC (values < 0 shown as 0)", fontsize=6.8, pad=2)
    legend_ax = figure.add_axes((0.58, 0.12 / height, 0.30, 0.45 / height))
    legend_ax.axis("off")
    legend_ax.legend(handles=[Patch(color=STABLE_COLOR, label=f"stable: CCC and ICC > {threshold:g}"),
                              Patch(color=MISSING_COLOR, label="not computable (see table)")],
                     loc="center left", fontsize=6.8, frameon=False)
    return _png(figure)


def bland_altman_png(wide: pd.DataFrame, bland_table: pd.DataFrame, lesion_type: str,
                     feature: str = "qsm_mean", unit: str = "ppm") -> bytes:
    """Bland-Altman plots of one feature and lesion type, one panel per pairwise comparison.

    Parameters
    ----------
    wide : DataFrame
        ``StudyAgreement.wide``.
    bland_table : DataFrame
        ``StudyAgreement.bland_altman`` (bias, limits and their intervals).
    lesion_type, feature : str
    unit : str
        Axis unit.

    Returns
    -------
    bytes
        PNG image.
    """
    pairwise = [c for c in COMPARISONS if c.pairwise]
    figure = Figure(figsize=(10.5, 7.6))
    axes = figure.subplots(2, 2, squeeze=False).ravel()
    try:
        frame = wide.xs((lesion_type, feature), level=("lesion_type", "feature"))
    except KeyError:
        frame = pd.DataFrame(columns=wide.columns)
    for ax, comparison in zip(axes, pairwise):
        first, second = comparison.columns
        pair = frame[[first, second]].dropna()
        x = pair.to_numpy(dtype=float)
        means = x.mean(axis=1) if len(x) else np.array([])
        differences = x[:, 0] - x[:, 1] if len(x) else np.array([])
        row = bland_table[(bland_table["lesion_type"] == lesion_type) & (bland_table["feature"] == feature)
                          & (bland_table["comparison"] == comparison.name)]
        ax.set_title(f"{comparison.name} ({first} - {second}), n = {len(pair)}", fontsize=9.5)
        ax.axhline(0, color="#9aa5b1", linewidth=0.8, zorder=1)
        if len(row) and np.isfinite(row["bias"].iloc[0]):
            r = row.iloc[0]
            for level, low, high, style, label in (
                    (r["bias"], r["bias_ci_low"], r["bias_ci_high"], "-", "bias"),
                    (r["loa_high"], r["loa_high_ci_low"], r["loa_high_ci_high"], "--",
                     f"+{r['multiplier']:.2f} SD"),
                    (r["loa_low"], r["loa_low_ci_low"], r["loa_low_ci_high"], "--",
                     f"-{r['multiplier']:.2f} SD")):
                ax.axhspan(low, high, color="#1f63b4" if label == "bias" else "#c0392b", alpha=0.10,
                           linewidth=0, zorder=0)
                ax.axhline(level, color="#1f63b4" if label == "bias" else "#c0392b", linestyle=style,
                           linewidth=1.2, zorder=2)
                ax.annotate(f"{label} {level:+.3f}", xy=(1.0, level), xycoords=("axes fraction", "data"),
                            xytext=(-3, 3), textcoords="offset points", ha="right", va="bottom", fontsize=7.5,
                            color="#1f2933")
            span = max(abs(r["loa_low_ci_low"]), abs(r["loa_high_ci_high"]),
                       float(np.abs(differences).max()) if differences.size else 0.0, 1e-12)
            ax.set_ylim(-1.2 * span, 1.2 * span)
        else:
            ax.text(0.5, 0.5, "not enough subjects with both readings", transform=ax.transAxes,
                    ha="center", va="center", fontsize=9, color="#7b8794")
            ax.set_xticks([])
            ax.set_yticks([])
        ax.scatter(means, differences, s=16, color="#2e3440", alpha=0.75, edgecolors="white", linewidths=0.4,
                   zorder=3)
        ax.set_xlabel(f"mean of the two readings ({unit})", fontsize=8.5)
        ax.set_ylabel(f"difference ({unit})", fontsize=8.5)
        ax.tick_params(labelsize=7.5)
        ax.grid(color="#e4e7eb", linewidth=0.6)
        ax.set_axisbelow(True)
        for spine in ("top", "right"):
            ax.spines[spine].set_visible(False)
    name = {"qsm_mean": "mean QSM", "qsm_median": "median QSM"}.get(feature, feature)
    figure.suptitle(f"Bland-Altman plots of {name}: {lesion_label(lesion_type).lower()}",
                    fontsize=11, fontweight="bold")
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    return _png(figure)
