"""One reading in the scene: start it, finish it, and the Segment Editor node it is drawn with.

The study store (``QSMReproducibilityLib.readings.Study``) comes in as an argument and is only called
through its methods, so this package imports nothing of the library but its tag names: the store opens and records
sessions and holds every validation rule; these functions put a session's nodes into the scene,
hand the drawing to the store as a ``.seg.nrrd`` and take the nodes out again.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile

import slicer

from .nodes import (
    SESSION_ATTRIBUTE,
    TAG_PREFIX,
    _TEMPORARY_NODE_NAME,
    ReadingSceneError,
    _node_ids,
    _remove_nodes_added_since,
    reading_segmentation_node,
    remove_reading_nodes,
    save_segmentation_node,
    volume_node_from_array,
)
from .display import configure_segment_editor_node, segment_voxel_counts

SEGMENT_EDITOR_SINGLETON = "QSMReproducibilitySegmentEditor"


@dataclasses.dataclass(frozen=True)
class OpenReading:
    """A reading whose nodes are in the scene.

    ``session`` is the store's ``ReadingSession``; ``qsm_node`` the session's QSM (its IJK-to-RAS is
    the QSM file's voxel->RAS affine); ``segmentation_node`` the reading's tagged segmentation.
    """

    session: object
    qsm_node: object
    segmentation_node: object


def readings_in_scene(scene) -> dict[str, str]:
    """Session UID -> case ID of every reading that has nodes in the scene."""
    sessions: dict[str, str] = {}
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        uid = node.GetAttribute(SESSION_ATTRIBUTE) if node is not None else None
        if uid:
            sessions[uid] = node.GetAttribute(TAG_PREFIX + "CaseID") or sessions.get(uid) or "?"
    return sessions


def start_reading(scene, study, observer: str, case_id: str | None = None, *,
                  override_reason: str | None = None) -> OpenReading:
    """Open a reading in the study and put only its QSM and a fresh tagged segmentation into the scene.

    Parameters
    ----------
    scene : vtkMRMLScene
    study : QSMReproducibilityLib.readings.Study
        The study store; it picks the case (blinded, randomised order, wash-out) and refuses what its
        rules forbid (``ReadingError``).
    observer : str
        Registered on first use.
    case_id : str, optional
        The case to read; by default the store's next case for this observer.
    override_reason : str, optional
        Start before the wash-out has passed, for this recorded reason (needs ``case_id``).

    Returns
    -------
    OpenReading

    Raises
    ------
    ReadingSceneError
        Another reading's nodes are in the scene (no other reading may be seen during this one); the
        study is not touched.
    """
    others = readings_in_scene(scene)
    if others:
        raise ReadingSceneError(
            f"a reading of case {', '.join(sorted(set(others.values())))} is still in the scene; "
            "finish or close it first")
    study.add_observer(observer)  # no-op for a registered observer
    if override_reason is not None:
        session = study.start_reading(observer, case_id, override_washout=True, reason=override_reason)
    else:
        session = study.start_reading(observer, case_id)
    attributes = {SESSION_ATTRIBUTE: session.session_uid, TAG_PREFIX + "CaseID": session.case_id}
    nodes_before = _node_ids(scene)
    try:
        chi_ppm, affine = study.qsm_volume(session.case_id)
        qsm_node = volume_node_from_array(scene, chi_ppm, affine, name=f"QSM {session.case_id}",
                                          attributes=attributes)
        segmentation_node = reading_segmentation_node(
            scene, qsm_node, session.segments("started"),
            name=f"{session.observer} reading {session.reading} {session.case_id}")
    except BaseException:
        # No half-made reading stays behind; the session stays open in the study and resumes next time.
        _remove_nodes_added_since(scene, nodes_before)
        raise
    return OpenReading(session, qsm_node, segmentation_node)


def finish_reading(scene, study, reading: OpenReading):
    """Record the drawn reading through the study store, then remove its nodes from the scene.

    A drawing without a lesion or without the CSF reference is refused first, in the reader's words
    (``Study.check_drawing``). Empty lesion segments (a lesion on one side only) are left out of the
    file when another lesion segment is drawn; everything else is judged by the store
    (``Study.finish_reading``). If the store refuses, the reading stays in the scene as it was and the
    store's ``ReadingError`` propagates.

    Returns
    -------
    ReadingRecord
        The store's record of the finished reading.
    """
    session = reading.session
    source = reading.segmentation_node
    voxels = segment_voxel_counts(source)
    study.check_drawing(session, voxels)  # the reader is told what is missing before anything is saved
    lesions = [segment_id for segment_id in voxels if segment_id.startswith("lesion_")]
    drawn_lesions = [segment_id for segment_id in lesions if voxels[segment_id] > 0]
    leave_out = [segment_id for segment_id in lesions if segment_id not in drawn_lesions] if drawn_lesions else []
    work_dir = tempfile.mkdtemp(prefix="qsmrepro_reading_")
    nodes_before = _node_ids(scene)
    try:
        # A copy is saved, so the open reading is never changed by a refused finish.
        copy = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", _TEMPORARY_NODE_NAME)
        copy.GetSegmentation().DeepCopy(source.GetSegmentation())
        for segment_id in leave_out:
            copy.GetSegmentation().RemoveSegment(segment_id)
        path = save_segmentation_node(
            copy, os.path.join(work_dir, f"{session.observer}_r{session.reading}.seg.nrrd"))
        record = study.finish_reading(session.session_uid, path)
    finally:
        _remove_nodes_added_since(scene, nodes_before)
        shutil.rmtree(work_dir, ignore_errors=True)
    remove_reading_nodes(scene, session.session_uid)
    return record


def close_reading(scene, reading: OpenReading) -> int:
    """Remove a reading's nodes without saving (the session stays open in the study); the count removed."""
    return remove_reading_nodes(scene, reading.session.session_uid)


def segment_editor_node(scene, singleton_tag: str = SEGMENT_EDITOR_SINGLETON):
    """The module's Segment Editor node, created if missing, with overwrite mode "none" set every time.

    Lesion and CSF never overlap, and painting one must not erase the other. ``vtkMRMLScene::Clear``
    keeps singleton nodes but resets them (``ResetNodes`` in ``Libs/MRML/Core/vtkMRMLScene.cxx``,
    v5.10.0 and v5.12.0), which puts the overwrite mode back to "all segments"; so the mode is set on
    every call, not only when the node is created.
    """
    node = scene.GetSingletonNode(singleton_tag, "vtkMRMLSegmentEditorNode")
    if node is None:
        # Instantiated directly: a bare scene (slicer-core) has not registered the class.
        node = slicer.vtkMRMLSegmentEditorNode()
        node.SetSingletonTag(singleton_tag)
        node = scene.AddNode(node)
    configure_segment_editor_node(node)
    return node
