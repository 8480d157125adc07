"""The reading core (``start_reading`` / ``finish_reading`` of the MRML package) on real MRML (slicer-core).

A reading is started from a real study store, drawn into the segments with the MRML helpers,
finished through the store and read back from the stored ``.seg.nrrd`` by the library's reader; the
voxels and tags that come back are compared with what was drawn on the QSM's own grid (nibabel's
affine of the file written here). Refusals come from the scene (another reading open) and from the
store (blinding, wash-out, empty CSF); after each, the scene holds exactly what it held before.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrml_support import mrml, slicer  # skips this module where slicer-core is absent

from QSMReproducibilityLib import segio, terminology  # noqa: E402
from QSMReproducibilityLib.errors import ReadingError  # noqa: E402
from QSMReproducibilityLib.readings import Study  # noqa: E402


SHAPE = (15, 12, 8)
P = terminology.TAG_PREFIX


def _affine() -> np.ndarray:
    a = np.deg2rad(20.0)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag(
        [-0.7, 0.9, 2.0])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    return affine


def _lesion() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[2:8, 3:5, 1:3] = True
    mask[2:4, 5:9, 1:3] = True       # an L: no flip or transposition maps it onto itself
    return mask


def _csf() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[10:13, 8:11, 5:7] = True
    return mask


def _node_ids(scene) -> set[str]:
    return {scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())
            if not scene.GetNthNode(n).IsA("vtkMRMLSubjectHierarchyNode")}


@pytest.fixture
def study(tmp_path):
    i, j, k = np.indices(SHAPE)
    chi = (0.01 * i - 0.02 * j + 0.03 * k).astype(np.float32)
    for case_id in ("VA-001", "VA-002"):
        nib.save(nib.Nifti1Image(chi, _affine()), tmp_path / f"{case_id}.nii.gz")
    with Study.create(tmp_path / "study", washout_days=60) as store:
        store.add_observer("O1")
        store.add_case("VA-001", "hematoma", tmp_path / "VA-001.nii.gz")
        store.add_case("VA-002", "calcification", tmp_path / "VA-002.nii.gz")
        yield store


@pytest.fixture
def scene():
    mrml.register_segmentation_converters()
    return slicer.vtkMRMLScene()


def test_a_reading_started_drawn_and_finished_is_stored_with_its_voxels_and_tags(scene, study):
    before = _node_ids(scene)
    reading = mrml.start_reading(scene, study, "O1", "VA-001")
    session = reading.session
    assert (session.case_id, session.observer, session.reading) == ("VA-001", "O1", 1)

    # Only this session's QSM and its segmentation are in the scene, on the file's own grid.
    voxels, affine = mrml.array_from_volume_node(reading.qsm_node)
    np.testing.assert_allclose(affine, _affine(), atol=1e-9)
    np.testing.assert_allclose(voxels, nib.load(session.qsm_path).get_fdata(), atol=1e-7)
    assert mrml.readings_in_scene(scene) == {session.session_uid: "VA-001"}
    segmentation = reading.segmentation_node.GetSegmentation()
    assert [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())] == \
        ["lesion_right", "lesion_left", "csf"]
    assert mrml.reading_tags_of(reading.segmentation_node) == session.tags("started")

    # The observer draws a lesion on the right and CSF; the left lesion segment stays empty.
    lesion, csf = _lesion(), _csf()
    mrml.set_segment_masks(reading.segmentation_node, {"lesion_right": lesion, "csf": csf}, reading.qsm_node)
    record = mrml.finish_reading(scene, study, reading)

    assert record.status == "finished" and record.session_uid == session.session_uid
    assert study.open_sessions("O1") == []
    assert _node_ids(scene) == before                       # nothing of the reading is left
    data = segio.read_seg_nrrd(record.segmentation_path)
    masks = data.on_grid(SHAPE, _affine())
    assert sorted(masks) == ["csf", "lesion_right"]         # the empty left lesion is left out
    np.testing.assert_array_equal(masks["lesion_right"], lesion)
    np.testing.assert_array_equal(masks["csf"], csf)
    for spec in data.segments:
        assert {key: spec.tags[key] for key in session.tags()} == session.tags("finished")
    assert {s.segment_id: s.tags[P + "Role"] for s in data.segments} == {"lesion_right": "lesion", "csf": "csf"}
    assert data.segments[0].tags[P + "LesionType"] == "hematoma"


def test_a_second_reading_is_refused_while_one_is_in_the_scene(scene, study):
    first = mrml.start_reading(scene, study, "O1", "VA-001")
    nodes = _node_ids(scene)
    with pytest.raises(mrml.ReadingSceneError, match="VA-001"):
        mrml.start_reading(scene, study, "O1", "VA-002")
    assert _node_ids(scene) == nodes
    assert [s.case_id for s in study.open_sessions("O1")] == ["VA-001"]   # the study was not touched
    assert mrml.close_reading(scene, first) > 0
    assert mrml.readings_in_scene(scene) == {}


def test_an_empty_csf_is_refused_by_the_store_and_the_reading_stays_open_and_untouched(scene, study):
    reading = mrml.start_reading(scene, study, "O1", "VA-001")
    mrml.set_segment_masks(reading.segmentation_node, {"lesion_left": _lesion()}, reading.qsm_node)
    nodes = _node_ids(scene)
    with pytest.raises(ReadingError, match="csf"):
        mrml.finish_reading(scene, study, reading)
    assert _node_ids(scene) == nodes
    masks = mrml.segment_masks(reading.segmentation_node, reading.qsm_node)
    np.testing.assert_array_equal(masks["lesion_left"], _lesion())
    assert not masks["lesion_right"].any() and not masks["csf"].any()
    assert [s.session_uid for s in study.open_sessions("O1")] == [reading.session.session_uid]

    # Drawing the CSF then finishes the same reading.
    mrml.set_segment_masks(reading.segmentation_node, {"csf": _csf()}, reading.qsm_node)
    assert mrml.finish_reading(scene, study, reading).reading == 1


def test_store_refusals_leave_the_scene_as_it_was(scene, study):
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)   # the store keeps whole seconds
    reading = mrml.start_reading(scene, study, "O1", "VA-001")
    mrml.set_segment_masks(reading.segmentation_node, {"lesion_right": _lesion(), "csf": _csf()}, reading.qsm_node)
    mrml.finish_reading(scene, study, reading)
    empty = _node_ids(scene)

    # Wash-out: the second reading of the case cannot start before 60 days have passed ...
    with pytest.raises(ReadingError, match="wash-out"):
        mrml.start_reading(scene, study, "O1", "VA-001")
    assert _node_ids(scene) == empty
    statuses = {row.case_id: row for row in study.case_status("O1")}
    assert statuses["VA-001"].state == "wash-out" and statuses["VA-001"].finished == 1
    assert statuses["VA-001"].washout_ends >= start + dt.timedelta(days=60)
    assert statuses["VA-002"].state == "ready"
    later = {row.case_id: row.state for row in study.case_status("O1", now=start + dt.timedelta(days=61))}
    assert later["VA-001"] == "ready"
    assert {row.state for row in study.case_status("O2")} == {"ready"}     # blind to O1's readings

    # ... unless overridden with a reason, which the store records.
    second = mrml.start_reading(scene, study, "O1", "VA-001", override_reason="protocol deviation approved")
    assert second.session.reading == 2
    assert [row.state for row in study.case_status("O1") if row.case_id == "VA-001"] == ["in progress"]
    mrml.close_reading(scene, second)

    # Blinding: a finished reading is never reopened; the store refuses to finish it a second time.
    with pytest.raises(ReadingError, match="already finished"):
        study.finish_reading(reading.session.session_uid, study.readings()[0].segmentation_path)
    assert _node_ids(scene) == empty


def test_a_failure_while_loading_leaves_no_node_behind(scene, study, monkeypatch):
    Path(study.case("VA-002").qsm_path).write_bytes(b"not a nifti file")
    before = _node_ids(scene)
    with pytest.raises(ReadingError, match="VA-002"):
        mrml.start_reading(scene, study, "O1", "VA-002")
    assert _node_ids(scene) == before

    # A failure after the QSM node is in the scene takes that node (and its display node) out again.
    def no_segmentation(*args, **kwargs):
        raise mrml.ReadingSceneError("segment could not be added")

    monkeypatch.setattr(sys.modules["QSMReproducibilityMRML.reading"], "reading_segmentation_node", no_segmentation)
    with pytest.raises(mrml.ReadingSceneError, match="segment"):
        mrml.start_reading(scene, study, "O1", "VA-001")
    assert _node_ids(scene) == before
    assert mrml.readings_in_scene(scene) == {}


def test_the_segment_editor_node_keeps_overwrite_none_after_the_scene_is_cleared(scene):
    none = slicer.vtkMRMLSegmentEditorNode.OverwriteNone
    node = mrml.segment_editor_node(scene)
    assert node.GetOverwriteMode() == none
    assert node.GetSingletonTag() == mrml.SEGMENT_EDITOR_SINGLETON
    scene.Clear(0)                   # what File > Close Scene does: singletons stay but are reset
    kept = scene.GetSingletonNode(mrml.SEGMENT_EDITOR_SINGLETON, "vtkMRMLSegmentEditorNode")
    assert kept is not None
    assert kept.GetOverwriteMode() == slicer.vtkMRMLSegmentEditorNode.OverwriteAllSegments
    again = mrml.segment_editor_node(scene)
    assert again.GetID() == kept.GetID()
    assert again.GetOverwriteMode() == none


def test_voxel_counts_read_from_the_segments_are_the_drawn_voxels(scene, study):
    reading = mrml.start_reading(scene, study, "O1", "VA-001")
    assert mrml.segment_voxel_counts(reading.segmentation_node) == {"lesion_right": 0, "lesion_left": 0, "csf": 0}
    lesion, csf = _lesion(), _csf()
    mrml.set_segment_masks(reading.segmentation_node, {"lesion_left": lesion, "csf": csf}, reading.qsm_node)
    # Counted by numpy on the masks drawn here: 6*2*2 + 2*4*2 = 40 and 3*3*2 = 18 voxels.
    assert (int(lesion.sum()), int(csf.sum())) == (40, 18)
    assert mrml.segment_voxel_counts(reading.segmentation_node) == {"lesion_right": 0, "lesion_left": 40, "csf": 18}
    mrml.close_reading(scene, reading)


def test_a_drawing_without_lesion_or_csf_is_refused_in_the_readers_words_before_anything_is_saved(scene, study):
    reading = mrml.start_reading(scene, study, "O1", "VA-001")
    with pytest.raises(ReadingError, match=r"no lesion is drawn.*CSF reference is empty"):
        mrml.finish_reading(scene, study, reading)
    mrml.set_segment_masks(reading.segmentation_node, {"csf": _csf()}, reading.qsm_node)
    with pytest.raises(ReadingError) as refused:
        mrml.finish_reading(scene, study, reading)
    message = str(refused.value)
    assert "no lesion is drawn" in message and "CSF" not in message and ".seg.nrrd" not in message
    assert not Path(reading.session.segmentation_path).exists()
    assert [s.session_uid for s in study.open_sessions("O1")] == [reading.session.session_uid]
    mrml.close_reading(scene, reading)


def test_the_qsm_is_shown_on_a_diverging_map_centred_on_zero_ppm(scene, study):
    reading = mrml.start_reading(scene, study, "O1", "VA-001")
    mrml.show_reading(reading.qsm_node, reading.segmentation_node)
    display = reading.qsm_node.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (pytest.approx(mrml.QSM_WINDOW_PPM), 0.0)
    assert not display.GetAutoWindowLevel() and not display.GetInterpolate()
    color_node = scene.GetNodeByID(display.GetColorNodeID())
    assert color_node is mrml.qsm_color_node(scene)            # built once, then reused
    table = color_node.GetLookupTable()
    n = table.GetNumberOfTableValues()
    # Level 0 sits in the middle of the table: white; the window's ends are pure blue and pure red.
    np.testing.assert_allclose(table.GetTableValue(0)[:3], (0, 0, 1))
    np.testing.assert_allclose(table.GetTableValue(n - 1)[:3], (1, 0, 0))
    np.testing.assert_allclose(table.GetTableValue(n // 2)[:3], (1, 1, 1), atol=1 / (n - 1))
    # Equal distances from 0 ppm are equally saturated on both sides.
    for k in (1, 40, 100):
        blue, red = np.array(table.GetTableValue(k)[:3]), np.array(table.GetTableValue(n - 1 - k)[:3])
        np.testing.assert_allclose(blue[::-1], red, atol=1e-9)
    segmentation_display = reading.segmentation_node.GetDisplayNode()
    # Outline over a semi-transparent fill, at 3D Slicer's own default fill opacity.
    slicer_default = slicer.vtkMRMLSegmentationDisplayNode().GetOpacity2DFill()
    assert segmentation_display.GetVisibility2DOutline() and segmentation_display.GetVisibility2DFill()
    assert segmentation_display.GetOpacity2DFill() == pytest.approx(slicer_default) == pytest.approx(0.5)
    mrml.close_reading(scene, reading)


def test_renewed_empty_layers_keep_the_segments_sharing_one_layer_and_a_drawn_layer_is_kept(scene, study):
    reading = mrml.start_reading(scene, study, "O1", "VA-001")
    segmentation = reading.segmentation_node.GetSegmentation()
    name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    labels = {sid: segmentation.GetSegment(sid).GetLabelValue() for sid in ("lesion_right", "lesion_left", "csf")}
    before = segmentation.GetSegment("csf").GetRepresentation(name)
    assert segmentation.GetNumberOfLayers() == 1
    assert mrml.renew_empty_labelmap_layers(reading.segmentation_node) == 1
    after = segmentation.GetSegment("csf").GetRepresentation(name)
    assert after is not before and segmentation.GetNumberOfLayers() == 1
    assert {sid: segmentation.GetSegment(sid).GetLabelValue() for sid in labels} == labels
    # Drawing still goes into the renewed layer; a layer with voxels is never replaced.
    lesion, csf = _lesion(), _csf()
    mrml.set_segment_masks(reading.segmentation_node, {"lesion_left": lesion, "csf": csf}, reading.qsm_node)
    counts = mrml.segment_voxel_counts(reading.segmentation_node)
    drawn = [segmentation.GetSegment(sid).GetRepresentation(name) for sid in ("lesion_left", "csf")]
    mrml.renew_empty_labelmap_layers(reading.segmentation_node)
    assert [segmentation.GetSegment(sid).GetRepresentation(name) for sid in ("lesion_left", "csf")] == drawn
    assert mrml.segment_voxel_counts(reading.segmentation_node) == counts == {
        "lesion_right": 0, "lesion_left": int(lesion.sum()), "csf": int(csf.sum())}
    mrml.close_reading(scene, reading)
