"""Scene-level helpers: volumes from (i, j, k) arrays, reading segmentations, tags, save/load, clean-up.

Array convention: the library indexes volumes (i, j, k) exactly as nibabel's ``get_fdata()`` returns
them, with a 4x4 voxel->RAS affine in mm. ``vtkImageData`` stores voxels with i varying fastest, which
``slicer.util.arrayFromVolume`` exposes as a (k, j, i) array; the conversion happens here, once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import vtk
from vtk.util import numpy_support

import slicer

from QSMReproducibilityLib.terminology import READING_TAG_KEYS, SEGMENT_TAG_KEYS, TAG_PREFIX

SESSION_ATTRIBUTE = TAG_PREFIX + "SessionUID"
NODE_CLASS_VOLUME = "vtkMRMLScalarVolumeNode"
_TEMPORARY_NODE_NAME = "__QSMReproducibility_temporary__"


class ReadingSceneError(RuntimeError):
    """The scene does not hold what a reading needs, or a reading could not be removed from it."""


# ---------------------------------------------------------------------------------------------------
# Matrices


def matrix_from_affine(affine: np.ndarray) -> vtk.vtkMatrix4x4:
    """A ``vtkMatrix4x4`` holding a 4x4 numpy affine."""
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        raise ValueError(f"an affine must be 4x4, got shape {affine.shape}")
    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for col in range(4):
            matrix.SetElement(row, col, affine[row, col])
    return matrix


def affine_from_matrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    """The 4x4 numpy array of a ``vtkMatrix4x4``."""
    return np.array([[matrix.GetElement(row, col) for col in range(4)] for row in range(4)])


# ---------------------------------------------------------------------------------------------------
# Volumes


def volume_node_from_array(
    scene,
    array_ijk: np.ndarray,
    affine_ras: np.ndarray,
    *,
    name: str,
    node_class: str = NODE_CLASS_VOLUME,
    node=None,
    attributes: Mapping[str, str] | None = None,
    display: bool = True,
):
    """Put an (i, j, k) array with its voxel->RAS affine into the scene as a volume node.

    Parameters
    ----------
    scene : vtkMRMLScene
    array_ijk : ndarray, shape (I, J, K)
        Voxel values indexed as nibabel returns them; booleans are stored as ``uint8``.
    affine_ras : ndarray, shape (4, 4)
        Voxel index -> RAS (mm); becomes the node's IJKToRAS matrix unchanged.
    name : str
        Node name (made unique by the scene if taken).
    node_class : str
        ``vtkMRMLScalarVolumeNode`` or ``vtkMRMLLabelMapVolumeNode``.
    node : vtkMRMLVolumeNode, optional
        Update this node instead of adding a new one.
    attributes : mapping, optional
        Node attributes to set (tags such as ``QSMReproducibility.SessionUID``).
    display : bool
        Create the default display node (not needed for temporary nodes).

    Returns
    -------
    vtkMRMLScalarVolumeNode
    """
    array_ijk = np.asarray(array_ijk)
    if array_ijk.ndim != 3:
        raise ValueError(f"a volume must be 3-D (i, j, k), got shape {array_ijk.shape}")
    if array_ijk.dtype == bool:
        array_ijk = array_ijk.astype(np.uint8)
    image = vtk.vtkImageData()
    image.SetDimensions(*(int(n) for n in array_ijk.shape))
    # vtkImageData runs i fastest: the C-order ravel of the (k, j, i) transpose.
    flat = np.ascontiguousarray(array_ijk.transpose(2, 1, 0)).ravel()
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=True))
    if node is None:
        node = scene.AddNewNodeByClass(node_class, name)
    else:
        node.SetName(name)
    node.SetIJKToRASMatrix(matrix_from_affine(affine_ras))
    node.SetAndObserveImageData(image)
    if display and node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    tag_node(node, attributes or {})
    return node


def array_from_volume_node(volume_node, *, world: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A volume node's voxels as an (i, j, k) array and its voxel->RAS affine.

    With ``world=True`` a linear parent transform is folded into the affine, so the affine places
    voxels where the viewers show them; a non-linear parent transform is refused.
    """
    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None or image.GetPointData().GetScalars() is None:
        name = volume_node.GetName() if volume_node is not None else "None"
        raise ReadingSceneError(f"volume {name!r} has no voxels")
    scalars = image.GetPointData().GetScalars()
    if scalars.GetNumberOfComponents() != 1:
        raise ReadingSceneError(
            f"volume {volume_node.GetName()!r} has {scalars.GetNumberOfComponents()} components; one is needed")
    dims = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(scalars).reshape(dims[::-1]).transpose(2, 1, 0).copy()
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    affine = affine_from_matrix(ijk_to_ras)
    extent_start = np.array(image.GetExtent()[::2], dtype=float)
    if extent_start.any():
        affine[:3, 3] += affine[:3, :3] @ extent_start
    if world and volume_node.GetParentTransformNode() is not None:
        parent = volume_node.GetParentTransformNode()
        if not parent.IsTransformToWorldLinear():
            raise ReadingSceneError(
                f"volume {volume_node.GetName()!r} is under a non-linear transform; harden or remove it first"
            )
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        affine = affine_from_matrix(to_world) @ affine
    return array, affine


def tag_node(node, attributes: Mapping[str, str]) -> None:
    """Set node attributes; keys must not contain ':' and values must not contain '|'."""
    for key, value in attributes.items():
        _check_tag(key, value)
        node.SetAttribute(key, str(value))


def _check_tag(key: str, value) -> None:
    if ":" in key or "|" in key or "|" in str(value):
        # The .seg.nrrd writer joins tags as key:value|key:value without escaping.
        raise ValueError(f"tag {key!r}={value!r}: keys may not contain ':' or '|' and values may not contain '|'")


# ---------------------------------------------------------------------------------------------------
# Segmentations


def register_segmentation_converters() -> None:
    """Register the labelmap <-> surface conversion rules once.

    Slicer's Segmentations module does this at start-up; a bare MRML scene (the ``slicer-core`` wheel)
    has no rules, and ``AddEmptySegment`` fails without them.
    """
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    registered = {rule.GetClassName() for rule in factory.GetConverterRules()}
    for rule_class in (
        slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
        slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule,
    ):
        if rule_class.__name__ not in registered:
            factory.RegisterConverterRule(rule_class())


def reading_segmentation_node(scene, reference_volume, segments: Sequence, *, name: str | None = None):
    """A fresh segmentation node for one reading, with one empty segment per spec.

    Parameters
    ----------
    scene : vtkMRMLScene
    reference_volume : vtkMRMLScalarVolumeNode
        The QSM being read; it fixes the labelmap geometry.
    segments : sequence of SegmentSpec-like objects
        Each with ``segment_id``, ``name``, ``color`` (RGB 0-1), ``tags`` (mapping) and optional
        ``terminology`` (Slicer terminology entry string), as ``QSMReproducibilityLib.terminology`` makes them.
    name : str, optional
        Node name; defaults to ``<observer> R<reading> <case>`` from the tags.

    Returns
    -------
    vtkMRMLSegmentationNode
        Reading tags (``QSMReproducibility.Observer/Reading/CaseID/SessionUID/Status``) are set as
        node attributes and, with the rest of each spec's tags, on every segment.
    """
    if not segments:
        raise ValueError("a reading needs at least one segment")
    register_segmentation_converters()
    first_tags = dict(segments[0].tags)
    node_tags = {key: first_tags[key] for key in READING_TAG_KEYS if key in first_tags}
    if name is None:
        name = "{} R{} {}".format(
            node_tags.get(TAG_PREFIX + "Observer", "observer"),
            node_tags.get(TAG_PREFIX + "Reading", "?"),
            node_tags.get(TAG_PREFIX + "CaseID", "case"),
        )
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    tag_node(node, node_tags)
    segmentation = node.GetSegmentation()
    for spec in segments:
        added = segmentation.AddEmptySegment(spec.segment_id, spec.name, [float(c) for c in spec.color])
        if added != spec.segment_id:
            raise ReadingSceneError(f"segment {spec.segment_id!r} could not be added (got {added!r})")
        segment = segmentation.GetSegment(spec.segment_id)
        for key, value in spec.tags.items():
            _check_tag(key, value)
            segment.SetTag(key, str(value))
        terminology = getattr(spec, "terminology", "")
        if terminology:
            segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
    return node


def reading_tags_of(segmentation_node) -> dict[str, str]:
    """The reading tags of a segmentation node: its attributes, else the tags of its first tagged segment.

    Node attributes live in the scene file only; a node loaded from a ``.seg.nrrd`` gets them back from
    the segment tags, which the file keeps.
    """
    tags = {key: segmentation_node.GetAttribute(key) for key in READING_TAG_KEYS}
    tags = {key: value for key, value in tags.items() if value is not None}
    if tags:
        return tags
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        found = segment_tags(segmentation.GetNthSegment(index), READING_TAG_KEYS)
        if found:
            return found
    return {}


def segment_tags(segment, keys: Iterable[str] = SEGMENT_TAG_KEYS) -> dict[str, str]:
    """The named tags of a ``vtkSegment`` that it has (the VTK API cannot list tag names)."""
    found = {}
    for key in keys:
        value = vtk.reference("")
        if segment.GetTag(key, value):
            found[key] = str(value)
    return found


def set_reading_status(segmentation_node, status: str) -> None:
    """Set ``QSMReproducibility.Status`` on the node and on every segment that carries reading tags."""
    key = TAG_PREFIX + "Status"
    _check_tag(key, status)
    segmentation_node.SetAttribute(key, status)
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        if segment.HasTag(SESSION_ATTRIBUTE):
            segment.SetTag(key, status)


def segment_masks(
    segmentation_node, reference_volume, segment_ids: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Each segment as a boolean (i, j, k) mask on the reference volume's grid.

    Segments are exported one at a time, so overlapping segments keep their own voxels.
    """
    scene = segmentation_node.GetScene()
    if scene is None:
        raise ReadingSceneError(f"segmentation {segmentation_node.GetName()!r} is not in a scene")
    segmentation = segmentation_node.GetSegmentation()
    if segment_ids is None:
        segment_ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    reference_shape = tuple(reference_volume.GetImageData().GetDimensions())
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    masks = {}
    for segment_id in segment_ids:
        if segmentation.GetSegment(segment_id) is None:
            raise ReadingSceneError(f"segmentation {segmentation_node.GetName()!r} has no segment {segment_id!r}")
        # The export adds a colour table for the labelmap; everything it adds is removed again.
        nodes_before = _node_ids(scene)
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", _TEMPORARY_NODE_NAME)
        try:
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(segment_id)
            if not logic.ExportSegmentsToLabelmapNode(
                segmentation_node, ids, labelmap, reference_volume, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
            ):
                raise ReadingSceneError(f"segment {segment_id!r} could not be exported to the reference grid")
            if labelmap.GetImageData() is None or labelmap.GetImageData().GetPointData().GetScalars() is None:
                masks[segment_id] = np.zeros(reference_shape, dtype=bool)
                continue
            values, _ = array_from_volume_node(labelmap, world=False)
        finally:
            _remove_nodes_added_since(scene, nodes_before)
        if values.shape != reference_shape:
            raise ReadingSceneError(
                f"segment {segment_id!r} exported on a {values.shape} grid, not the reference {reference_shape}"
            )
        masks[segment_id] = values > 0
    return masks


def set_segment_masks(segmentation_node, masks: Mapping[str, np.ndarray], reference_volume) -> None:
    """Replace the voxels of the named segments by boolean (i, j, k) masks on the reference volume's grid.

    A segment that does not exist yet is added (named after its ID). Other segments are untouched.
    """
    register_segmentation_converters()
    scene = segmentation_node.GetScene()
    segmentation = segmentation_node.GetSegmentation()
    reference_shape = tuple(reference_volume.GetImageData().GetDimensions())
    _, affine = array_from_volume_node(reference_volume, world=False)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    for segment_id, mask in masks.items():
        mask = np.asarray(mask)
        if mask.shape != reference_shape:
            raise ValueError(f"mask {segment_id!r} has shape {mask.shape}; the reference grid is {reference_shape}")
        if segmentation.GetSegment(segment_id) is None:
            segmentation.AddEmptySegment(segment_id, segment_id)
        nodes_before = _node_ids(scene)
        labelmap = volume_node_from_array(
            scene, mask.astype(bool), affine, name=_TEMPORARY_NODE_NAME, node_class="vtkMRMLLabelMapVolumeNode",
            display=False,
        )
        try:
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(segment_id)
            if not logic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node, ids):
                raise ReadingSceneError(f"mask {segment_id!r} could not be imported into the segmentation")
        finally:
            _remove_nodes_added_since(scene, nodes_before)


def save_segmentation_node(segmentation_node, path) -> str:
    """Write a segmentation node to a ``.seg.nrrd`` file (Slicer's own writer; segment tags included)."""
    path = os.fspath(path)
    if not path.endswith(".seg.nrrd"):
        raise ValueError(f"{path}: a segmentation file must end in .seg.nrrd")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(path)
    storage.SetUseCompression(True)
    if not storage.WriteData(segmentation_node):
        raise ReadingSceneError(f"{path}: the segmentation could not be written")
    return path


def load_segmentation_node(scene, path, *, name: str | None = None):
    """Load a ``.seg.nrrd`` into the scene; the reading tags of its segments become node attributes."""
    register_segmentation_converters()
    path = os.fspath(path)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or os.path.basename(path).split(".")[0])
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(path)
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        _remove_with_dependents(scene, node)
        raise ReadingSceneError(f"{path}: not a readable segmentation file")
    node.CreateDefaultDisplayNodes()
    tag_node(node, reading_tags_of(node))
    return node


# ---------------------------------------------------------------------------------------------------
# Tables


def table_node_from_columns(scene, columns: Mapping[str, Sequence], *, name: str, node=None):
    """A table node with one column per entry: numbers become double columns, anything else strings.

    Missing numbers (None or NaN) stay NaN; the table is replaced if ``node`` is given.
    """
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    with _modifying(node):
        for index in reversed(range(table.GetNumberOfColumns())):
            table.RemoveColumn(index)
        for column_name, values in columns.items():
            values = list(values)
            numeric = all(_is_number(value) for value in values)
            array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
            array.SetName(str(column_name))
            for value in values:
                if numeric:
                    array.InsertNextValue(float("nan") if value is None else float(value))
                else:
                    array.InsertNextValue("" if value is None or value != value else str(value))
            table.AddColumn(array)
    return node


def _is_number(value) -> bool:
    if value is None:
        return True
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, (int, float, np.integer, np.floating))


class _modifying:
    """Batch the Modified events of a node while it is rebuilt."""

    def __init__(self, node):
        self.node = node

    def __enter__(self):
        self.was_modifying = self.node.StartModify()
        return self.node

    def __exit__(self, *exc):
        self.node.Modified()
        self.node.EndModify(self.was_modifying)
        return False


# ---------------------------------------------------------------------------------------------------
# Scene clean-up


def reading_nodes(scene, session_uid: str) -> list:
    """Every node of the scene tagged with this reading's session UID, plus their display/storage nodes."""
    tagged = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if node is not None and node.GetAttribute(SESSION_ATTRIBUTE) == session_uid:
            tagged.append(node)
    found = {}
    for node in tagged:
        for dependent in [node, *_dependents(node)]:
            found.setdefault(dependent.GetID(), dependent)
    return list(found.values())


def remove_reading_nodes(scene, session_uid: str) -> int:
    """Remove a reading's nodes from the scene and check that nothing of it remains.

    Returns the number of nodes removed; raises :class:`ReadingSceneError` if any node tagged with the
    session, or any display/storage node that belonged to one, is still in the scene afterwards.
    """
    nodes = reading_nodes(scene, session_uid)
    node_ids = [node.GetID() for node in nodes]
    for node in nodes:
        if scene.GetNodeByID(node.GetID()) is not None:
            scene.RemoveNode(node)
    left = [node_id for node_id in node_ids if scene.GetNodeByID(node_id) is not None]
    left += [node.GetID() for node in reading_nodes(scene, session_uid) if node.GetID() not in left]
    if left:
        raise ReadingSceneError(f"reading {session_uid}: nodes still in the scene after clean-up: {', '.join(left)}")
    return len(node_ids)


def _dependents(node) -> list:
    """Display and storage nodes of a displayable/storable node."""
    out = []
    for count_name, getter_name in (
        ("GetNumberOfDisplayNodes", "GetNthDisplayNode"),
        ("GetNumberOfStorageNodes", "GetNthStorageNode"),
    ):
        if hasattr(node, count_name):
            for index in range(getattr(node, count_name)()):
                dependent = getattr(node, getter_name)(index)
                if dependent is not None:
                    out.append(dependent)
    return out


def _node_ids(scene) -> set[str]:
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}


def _remove_nodes_added_since(scene, node_ids_before: set[str]) -> None:
    """Remove the temporary nodes (labelmap, its display node, colour table) a conversion added.

    The subject hierarchy node is scene infrastructure, created on first use, and stays.
    """
    for node_id in sorted(_node_ids(scene) - node_ids_before):
        node = scene.GetNodeByID(node_id)
        if node is not None and not node.IsA("vtkMRMLSubjectHierarchyNode"):
            scene.RemoveNode(node)


def _remove_with_dependents(scene, node) -> None:
    """Remove a node with its display and storage nodes."""
    for dependent in [*_dependents(node), node]:
        if scene.GetNodeByID(dependent.GetID()) is not None:
            scene.RemoveNode(dependent)
