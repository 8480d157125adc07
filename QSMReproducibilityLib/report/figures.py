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

from ..agreement import COMPARISONS
from ..feature_table import RADIOMICS_CLASSES

CLASS_LABELS = {
    "firstorder": "First order", "shape": "Shape", "shape2D": "Shape 2D", "glcm": "GLCM", "glrlm": "GLRLM",
    "glszm": "GLSZM", "gldm": "GLDM", "ngtdm": "NGTDM",
}
LESION_LABELS = {"hematoma": "Dissecting intramural hematoma", "calcification": "Atherosclerotic calcification"}

STABLE_COLOR = "#1f63b4"
MISSING_COLOR = "#f2d4cf"
_VALUE_COLORS = ["#ffffff", "#d9dde3", "#8a94a3", "#2e3440"]
FIGURE_DPI = 200
"""Resolution of the PNG figures; the HTML report shows them at 96 CSS pixels per inch."""
_MINUS = "\u2212"


def lesion_label(lesion_type: str) -> str:
    """Readable name of a lesion type."""
    return LESION_LABELS.get(lesion_type, lesion_type.capitalize())


def feature_label(feature: str) -> str:
    """Short feature name for axes: ``original_glcm_Contrast`` -> ``Contrast``."""
    parts = feature.split("_", 2)
    return parts[2] if len(parts) == 3 else feature


def _png(figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure)
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, facecolor="white")
    return buffer.getvalue()


def _signed(value: float, digits: int = 3) -> str:
    text = f"{value:+.{digits}f}"
    if float(text) == 0:                       # no "-0.000" for a value that rounds to zero
        return f"{0:.{digits}f}"
    return text.replace("-", _MINUS)


def heatmap_png(feature_agreement: pd.DataFrame, lesion_types: Sequence[str], threshold: float,
                icc_form: str) -> bytes:
    """Figure 3 of the study: CCC and ICC of every radiomic feature in every comparison.

    Rows are the PyRadiomics features grouped by class (class names on the right); columns are lesion
    type x statistic (CCC, ICC) x comparison. Cells are shaded by value (0 white to 1 dark grey; negative
    values as 0); cells of features that are stable in that comparison (CCC and ICC > threshold) are blue,
    as in the study's figure; cells that could not be computed are pale red. The colour scale marks the
    threshold.

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
        PNG image (``FIGURE_DPI`` dots per inch).
    """
    from matplotlib.colors import LinearSegmentedColormap, to_rgb
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    value_cmap = LinearSegmentedColormap.from_list("agreement", _VALUE_COLORS)
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

    # Layout in inches: feature names on the left, class names on the right, three header lines on top
    # (lesion type, statistic, comparison written upwards) and the colour scale below.
    row_in, label_pt = 0.175, 8.0
    left_in, right_in, top_in, bottom_in = 2.7, 0.95, 1.7, 1.0
    width_in = 10.5
    height_in = top_in + bottom_in + row_in * n_rows
    figure = Figure(figsize=(width_in, height_in))
    map_box = (left_in / width_in, bottom_in / height_in, 1 - (left_in + right_in) / width_in,
               row_in * n_rows / height_in)
    ax = figure.add_axes(map_box)
    # One RGB image: grey by value, blue where stable, pale red where not computable.
    cells = value_cmap(np.clip(np.nan_to_num(values, nan=0.0), 0, 1))[..., :3]
    cells[stable] = to_rgb(STABLE_COLOR)
    cells[np.isnan(values)] = to_rgb(MISSING_COLOR)
    ax.imshow(cells, aspect="auto", interpolation="nearest")

    if not features:
        ax.text(0.5, 0.5, "no PyRadiomics features in the feature table", transform=ax.transAxes, ha="center",
                va="center", fontsize=9, color="#52606d")

    # Thin white grid between cells, wider gaps between statistics and between lesion types.
    ax.set_xticks(np.arange(-0.5, n_cols, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n_rows, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    group = len(comparisons)
    for j in range(group, n_cols, group):
        ax.axvline(j - 0.5, color="white", linewidth=4.0 if j % (2 * group) == 0 else 2.0)

    ax.set_yticks(range(len(features)))
    ax.set_yticklabels([feature_label(f) for f in features], fontsize=label_pt)
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels([comp for (_lt, _stat, comp) in columns], rotation=90, fontsize=label_pt)
    ax.tick_params(axis="x", top=True, labeltop=True, bottom=False, labelbottom=False, length=0, pad=3)
    ax.tick_params(axis="y", length=0, pad=3)
    for spine in ax.spines.values():
        spine.set_visible(False)

    # Feature-class bands: a dark rule between classes, a bracket and the class name on the right.
    blend_y = blended_transform_factory(ax.transAxes, ax.transData)
    start = 0
    for i in range(1, len(classes) + 1):
        if i == len(classes) or classes[i] != classes[start]:
            if i < len(classes):
                ax.axhline(i - 0.5, color="#1f2933", linewidth=1.1)
            ax.plot([1.012, 1.012], [start - 0.4, i - 0.6], transform=blend_y, color="#3e4c59",
                    linewidth=1.2, clip_on=False)
            separator = "\n" if i - start >= 3 else " "          # two lines only where the band is tall
            ax.text(1.024, (start + i - 1) / 2, f"{CLASS_LABELS.get(classes[start], classes[start])}{separator}"
                    f"({i - start})", transform=blend_y, va="center", ha="left", fontsize=8.5,
                    fontweight="bold", color="#1f2933", linespacing=1.3)
            start = i

    # Column headers above the comparison labels: lesion type, then statistic.
    blend_x = blended_transform_factory(ax.transData, figure.transFigure)
    header_lesion = 1 - 0.22 / height_in
    header_stat = 1 - 0.50 / height_in
    for g, lt in enumerate(lesion_types):
        first = g * 2 * group
        ax.text(first + group - 0.5, header_lesion, lesion_label(lt), transform=blend_x, ha="center",
                va="center", fontsize=10, fontweight="bold", color="#1f2933")
        for s_index, stat in enumerate(("CCC", f"ICC ({icc_form})")):
            low, high = first + s_index * group - 0.4, first + (s_index + 1) * group - 0.6
            ax.plot([low, high], [header_stat - 0.11 / height_in] * 2, transform=blend_x, color="#616e7c",
                    linewidth=0.9, clip_on=False)
            ax.text((low + high) / 2, header_stat, stat, transform=blend_x, ha="center", va="center",
                    fontsize=9, fontweight="bold", color="#3e4c59")

    # Colour scale with the threshold, and the legend, below the map.
    cax = figure.add_axes((left_in / width_in, 0.42 / height_in, 3.0 / width_in, 0.14 / height_in))
    gradient = np.linspace(0, 1, 256)[None, :]
    cax.imshow(gradient, cmap=value_cmap, aspect="auto", extent=(0, 1, 0, 1))
    cax.axvline(threshold, color=STABLE_COLOR, linewidth=1.6) if 0 <= threshold <= 1 else None
    cax.set_yticks([])
    ticks = [0, 0.25, 0.5, 0.75, 1.0]
    cax.set_xticks(ticks)
    cax.set_xticklabels([f"{t:g}" for t in ticks])
    cax.tick_params(labelsize=7.5, length=2.5)
    cax.set_title("CCC or ICC (values below 0 shown as 0)", fontsize=8, pad=4, loc="left")
    if 0 <= threshold <= 1:
        cax.text(1.03, 0.5, f"blue line:\nthreshold {threshold:g}", transform=cax.transAxes, ha="left",
                 va="center", fontsize=7.5, color=STABLE_COLOR, linespacing=1.2)
    legend_ax = figure.add_axes(((left_in + 4.1) / width_in, 0.15 / height_in, 3.2 / width_in,
                                 0.6 / height_in))
    legend_ax.axis("off")
    legend_ax.legend(handles=[Patch(color=STABLE_COLOR, label=f"stable: CCC and ICC > {threshold:g}"),
                              Patch(color=MISSING_COLOR, label="not computable (reason in the per-feature table)")],
                     loc="center left", fontsize=8, frameon=False)
    return _png(figure)


def bland_altman_png(wide: pd.DataFrame, bland_table: pd.DataFrame, lesion_type: str,
                     feature: str = "qsm_mean", unit: str = "ppm") -> bytes:
    """Bland-Altman plots of one feature and lesion type, one panel per pairwise comparison.

    Each panel plots the difference of the two readings against their mean, with the bias (solid), the
    95 % limits of agreement (dashed) and the confidence interval of each (shaded); the values are written
    to the right of the panel, as MedCalc prints them.

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
        PNG image (``FIGURE_DPI`` dots per inch).
    """
    from matplotlib.figure import Figure

    pairwise = [c for c in COMPARISONS if c.pairwise]
    figure = Figure(figsize=(10.5, 8.2))
    grid = figure.add_gridspec(2, 2, left=0.085, right=0.895, bottom=0.075, top=0.885, wspace=0.42, hspace=0.42)
    axes = [figure.add_subplot(grid[i // 2, i % 2]) for i in range(4)]
    try:
        frame = wide.xs((lesion_type, feature), level=("lesion_type", "feature"))
    except KeyError:
        frame = pd.DataFrame(columns=wide.columns)
    # One scale for the four panels, so the comparisons can be read against each other.
    spans, x_ranges = [1e-12], []
    for ax, comparison in zip(axes, pairwise):
        first, second = comparison.columns
        pair = frame[[first, second]].dropna()
        x = pair.to_numpy(dtype=float)
        means = x.mean(axis=1) if len(x) else np.array([])
        differences = x[:, 0] - x[:, 1] if len(x) else np.array([])
        row = bland_table[(bland_table["lesion_type"] == lesion_type) & (bland_table["feature"] == feature)
                          & (bland_table["comparison"] == comparison.name)]
        ax.set_title(f"{comparison.name} (n = {len(pair)})", fontsize=10, fontweight="bold", loc="left")
        ax.axhline(0, color="#9aa5b1", linewidth=0.8, zorder=1)
        if len(row) and np.isfinite(row["bias"].iloc[0]):
            r = row.iloc[0]
            for level, low, high, style, label, color in (
                    (r["bias"], r["bias_ci_low"], r["bias_ci_high"], "-", "Bias", "#1f63b4"),
                    (r["loa_high"], r["loa_high_ci_low"], r["loa_high_ci_high"], "--",
                     f"+{r['multiplier']:.2f} SD", "#c0392b"),
                    (r["loa_low"], r["loa_low_ci_low"], r["loa_low_ci_high"], "--",
                     f"{_MINUS}{r['multiplier']:.2f} SD", "#c0392b")):
                ax.axhspan(low, high, color=color, alpha=0.10, linewidth=0, zorder=0)
                ax.axhline(level, color=color, linestyle=style, linewidth=1.3, zorder=2)
                ax.annotate(f"{label}\n{_signed(level)}", xy=(1.0, level), xycoords=("axes fraction", "data"),
                            xytext=(5, 0), textcoords="offset points", ha="left", va="center", fontsize=8,
                            color=color, annotation_clip=False, linespacing=1.15)
            spans.append(max(abs(r["loa_low_ci_low"]), abs(r["loa_high_ci_high"]),
                             float(np.abs(differences).max()) if differences.size else 0.0))
            if means.size:
                x_ranges.append((float(means.min()), float(means.max())))
        else:
            ax.text(0.5, 0.5, "not enough lesions with both readings", transform=ax.transAxes,
                    ha="center", va="center", fontsize=9, color="#7b8794")
            ax.set_xticks([])
            ax.set_yticks([])
        ax.scatter(means, differences, s=18, color="#2e3440", alpha=0.8, edgecolors="white", linewidths=0.4,
                   zorder=3)
        ax.set_xlabel(f"Mean of {first} and {second} ({unit})", fontsize=9)
        ax.set_ylabel(f"{first} {_MINUS} {second} ({unit})", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(color="#e4e7eb", linewidth=0.6)
        ax.set_axisbelow(True)
        for spine in ("top", "right"):
            ax.spines[spine].set_visible(False)
    span = max(spans)
    for ax in axes:
        if ax.get_yticks().size:
            ax.set_ylim(-1.15 * span, 1.15 * span)
            if x_ranges:
                low, high = min(r[0] for r in x_ranges), max(r[1] for r in x_ranges)
                margin = 0.05 * (high - low) if high > low else max(abs(low), 1e-3) * 0.1
                ax.set_xlim(low - margin, high + margin)
    name = {"qsm_mean": "mean QSM", "qsm_median": "median QSM"}.get(feature, feature)
    figure.suptitle(f"Bland\u2013Altman plots of {name}: {lesion_label(lesion_type).lower()}",
                    fontsize=12, fontweight="bold", y=0.975)
    figure.text(0.5, 0.935, "O1, O2: observers; R1, R2: first and second reading. Shaded: 95 % confidence "
                "intervals of the bias and of the limits of agreement.", ha="center", fontsize=8.5,
                color="#52606d")
    return _png(figure)
