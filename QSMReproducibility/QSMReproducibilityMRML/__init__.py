"""MRML glue of the QSMReproducibility module: nodes <-> arrays, reading segmentations, scene clean-up.

Every function takes the ``vtkMRMLScene`` (or a node of it) it works on and imports nothing but
``vtk``, ``numpy``, the MRML classes of ``slicer`` and the study's tag names
(``QSMReproducibilityLib.terminology``, which needs only numpy), so the same code runs inside 3D Slicer
and under the ``slicer-core`` wheel (real MRML, no Qt) in plain pytest. The science lives in
``QSMReproducibilityLib``; this package only moves data between it and the scene.
"""

from .display import (
    QSM_WINDOW_PPM,
    configure_segment_editor_node,
    diverging_blue_red,
    qsm_color_node,
    renew_empty_labelmap_layers,
    segment_voxel_counts,
    show_reading,
)
from .nodes import (
    NODE_CLASS_VOLUME,
    READING_TAG_KEYS,
    SEGMENT_TAG_KEYS,
    TAG_PREFIX,
    ReadingSceneError,
    affine_from_matrix,
    array_from_volume_node,
    load_segmentation_node,
    matrix_from_affine,
    reading_nodes,
    reading_segmentation_node,
    reading_tags_of,
    register_segmentation_converters,
    remove_reading_nodes,
    save_segmentation_node,
    segment_masks,
    segment_tags,
    set_reading_status,
    set_segment_masks,
    table_node_from_columns,
    tag_node,
    volume_node_from_array,
)
from .reading import (
    SEGMENT_EDITOR_SINGLETON,
    OpenReading,
    close_reading,
    finish_reading,
    readings_in_scene,
    segment_editor_node,
    start_reading,
)

__all__ = [
    "QSM_WINDOW_PPM",
    "configure_segment_editor_node",
    "diverging_blue_red",
    "qsm_color_node",
    "segment_voxel_counts",
    "renew_empty_labelmap_layers",
    "show_reading",
    "NODE_CLASS_VOLUME",
    "OpenReading",
    "SEGMENT_EDITOR_SINGLETON",
    "close_reading",
    "finish_reading",
    "readings_in_scene",
    "segment_editor_node",
    "start_reading",
    "READING_TAG_KEYS",
    "SEGMENT_TAG_KEYS",
    "TAG_PREFIX",
    "ReadingSceneError",
    "affine_from_matrix",
    "array_from_volume_node",
    "load_segmentation_node",
    "matrix_from_affine",
    "reading_nodes",
    "reading_segmentation_node",
    "reading_tags_of",
    "register_segmentation_converters",
    "remove_reading_nodes",
    "save_segmentation_node",
    "segment_masks",
    "segment_tags",
    "set_reading_status",
    "set_segment_masks",
    "table_node_from_columns",
    "tag_node",
    "volume_node_from_array",
]
