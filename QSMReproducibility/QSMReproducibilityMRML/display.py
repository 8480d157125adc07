"""How a reading looks, the same in 3D Slicer and in the browser reading station.

The QSM is shown on a diverging blue-white-red colour map centred on 0 ppm (diamagnetic blue,
paramagnetic red) with a fixed window, so the same lesion looks the same to every observer and in
every reading; the segments are outlined over a semi-transparent fill; and the Segment Editor never lets one
segment overwrite another. Voxel counts per segment are read from the segments' own labelmaps.
"""

from __future__ import annotations

import numpy as np
from vtk.util import numpy_support

import slicer

QSM_WINDOW_PPM = 0.6
"""Display window of χ in ppm (level 0): ±0.3 ppm covers the study's lesions (haematomas 0.277 ± 0.092 ppm,
calcifications −0.208 ± 0.078 ppm, Park et al., Results) with the CSF reference near 0."""

SLICER_DIVERGING_COLOR_NODE_ID = "vtkMRMLColorTableNodeFileDivergingBlueRed.txt"
"""3D Slicer's own diverging table (loaded from its colour files; the slicer-core wheel has none)."""

QSM_COLOR_SINGLETON = "QSMReproducibilityDivergingBlueRed"
QSM_COLOR_ENTRIES = 256

SEGMENT_FILL_OPACITY_2D = 0.5
"""Opacity of a segment's fill in slice views: 3D Slicer's default (``vtkMRMLSegmentationDisplayNode``),
over a full-opacity outline, so the χ map stays visible under a painted lesion."""
SEGMENT_OUTLINE_THICKNESS = 2


def diverging_blue_red(entries: int = QSM_COLOR_ENTRIES) -> np.ndarray:
    """RGB (0-1) of a diverging map: blue at the low end, white in the middle, red at the high end.

    Returns an ``(entries, 3)`` array; linear in each half, so the middle entry (0 ppm at level 0)
    is white and equal distances from 0 ppm have equal saturation on both sides.
    """
    if entries < 3:
        raise ValueError(f"a diverging colour map needs at least 3 entries, got {entries}")
    t = np.linspace(-1.0, 1.0, entries)[:, None]
    blue, white, red = np.array([0.0, 0.0, 1.0]), np.ones(3), np.array([1.0, 0.0, 0.0])
    return np.where(t < 0, white + (-t) * (blue - white), white + t * (red - white))


def qsm_color_node(scene):
    """The scene's diverging colour node for QSM: Slicer's ``DivergingBlueRed`` where it is loaded,
    else a table built here once (a singleton, so every reading reuses it)."""
    node = scene.GetNodeByID(SLICER_DIVERGING_COLOR_NODE_ID)
    if node is not None:
        return node
    node = scene.GetSingletonNode(QSM_COLOR_SINGLETON, "vtkMRMLColorTableNode")
    if node is not None:
        return node
    node = slicer.vtkMRMLColorTableNode()
    node.SetName("QSM diverging blue-white-red")
    node.SetSingletonTag(QSM_COLOR_SINGLETON)
    node.SetTypeToUser()
    node.SetHideFromEditors(True)
    colors = diverging_blue_red()
    node.SetNumberOfColors(len(colors))
    node.GetLookupTable().SetTableRange(0, len(colors) - 1)
    for index, (r, g, b) in enumerate(colors):
        node.SetColor(index, f"{index}", float(r), float(g), float(b), 1.0)
    return scene.AddNode(node)


def show_reading(qsm_node, segmentation_node=None) -> None:
    """Display settings of a reading: QSM on the diverging map, window ``QSM_WINDOW_PPM`` at 0 ppm, no
    interpolation (voxels are what the observer paints); segments outlined over a semi-transparent fill, as in Slicer."""
    display = qsm_node.GetDisplayNode()
    if display is None:
        qsm_node.CreateDefaultDisplayNodes()
        display = qsm_node.GetDisplayNode()
    display.SetAndObserveColorNodeID(qsm_color_node(qsm_node.GetScene()).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevel(QSM_WINDOW_PPM, 0.0)
    display.SetInterpolate(False)
    if segmentation_node is not None:
        if segmentation_node.GetDisplayNode() is None:
            segmentation_node.CreateDefaultDisplayNodes()
        segmentation_display = segmentation_node.GetDisplayNode()
        segmentation_display.SetVisibility2DOutline(True)
        segmentation_display.SetVisibility2DFill(True)
        segmentation_display.SetOpacity2DFill(SEGMENT_FILL_OPACITY_2D)
        segmentation_display.SetSliceIntersectionThickness(SEGMENT_OUTLINE_THICKNESS)


def renew_empty_labelmap_layers(segmentation_node) -> int:
    """Give each empty labelmap layer a new, empty labelmap object, shared by the same segments.

    For the browser reading station, once trame-slicer's Segment Editor has taken the segmentation:
    painted into, the layer that ``vtkSegmentation::AddEmptySegment`` made when the reading's segments
    were added rendered its 2D fill over black in the slice views (the fill's colour times its opacity,
    nothing of the χ map beneath; seen with slicer-core 5.11.0.6, VTK 9.6, Mesa EGL), while a layer set
    after the editor took the segmentation renders as in Slicer. An empty layer holds no voxels, so
    nothing of the reading changes; a layer with voxels is left as it is.

    Returns
    -------
    int
        The number of layers renewed.
    """
    segmentation = segmentation_node.GetSegmentation()
    representation = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    if segmentation.GetSourceRepresentationName() != representation:
        return 0
    layers: dict[int, list[str]] = {}
    labelmaps = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        labelmap = segmentation.GetSegment(segment_id).GetRepresentation(representation)
        if labelmap is None:
            continue
        key = id(labelmap)  # segments of one layer share the one labelmap object
        labelmaps[key] = labelmap
        layers.setdefault(key, []).append(segment_id)
    renewed_layers = 0
    for key, segment_ids in layers.items():
        labelmap = labelmaps[key]
        if not labelmap.IsEmpty() and labelmap.GetPointData().GetScalars() is not None:
            continue
        renewed = slicer.vtkOrientedImageData()
        for segment_id in segment_ids:
            segmentation.GetSegment(segment_id).AddRepresentation(representation, renewed)
        renewed_layers += 1
    return renewed_layers


def configure_segment_editor_node(node) -> None:
    """Overwrite mode "none": lesion and CSF never overlap, and painting one must not erase the other."""
    if node.GetOverwriteMode() != slicer.vtkMRMLSegmentEditorNode.OverwriteNone:
        node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)


def segment_voxel_counts(segmentation_node) -> dict[str, int]:
    """Voxels of each segment, read from its binary labelmap (segment ID -> count, in segment order).

    A reading's segmentation has the QSM's geometry (``reading_segmentation_node``), so these are QSM
    voxels. Segments may share one labelmap layer; a segment's voxels are those holding its label value.
    """
    segmentation = segmentation_node.GetSegmentation()
    representation = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    counts: dict[str, int] = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        segment_id = segmentation.GetNthSegmentID(index)
        labelmap = segment.GetRepresentation(representation)
        scalars = labelmap.GetPointData().GetScalars() if labelmap is not None else None
        if scalars is None or labelmap.IsEmpty():
            counts[segment_id] = 0
            continue
        values = numpy_support.vtk_to_numpy(scalars)
        counts[segment_id] = int(np.count_nonzero(values == segment.GetLabelValue()))
    return counts
