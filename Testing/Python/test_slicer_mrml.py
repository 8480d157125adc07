"""The Slicer module's MRML glue against real MRML (the ``slicer-core`` wheel, no Qt, no application).

References outside the code under test: nibabel's affine, SimpleITK's reading of the same NIfTI
(voxel order and LPS geometry), pynrrd's reading of the ``.seg.nrrd`` Slicer writes, and the
library's own ``.seg.nrrd`` reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrml_support import mrml, slicer  # skips this module where slicer-core is absent

from affines import oblique_affine  # noqa: E402


P = mrml.TAG_PREFIX
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])
OBLIQUE = {"voxel_mm": (0.7, 0.9, 2.0), "rotation_deg": (-9.0, 0.0, 17.0), "origin_mm": (-31.5, 12.25, 40.0)}
"""Rotated about two axes, anisotropic 0.7 x 0.9 x 2.0 mm voxels, off-centre."""


@pytest.fixture(scope="module", autouse=True)
def converters():
    mrml.register_segmentation_converters()


@pytest.fixture()
def scene():
    return slicer.vtkMRMLScene()


def asymmetric_volume(shape=(13, 9, 6)) -> np.ndarray:
    """Every voxel distinct: value = 100 i + 10 j + k, plus an L-shaped block; no symmetry to hide a flip."""
    i, j, k = np.indices(shape)
    volume = (100.0 * i + 10.0 * j + k).astype(np.float32)
    volume[2:6, 1:3, 1:4] += 5000.0
    volume[2:3, 3:7, 1:4] += 5000.0
    return volume


def node_matrix(node) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return mrml.affine_from_matrix(matrix)


def itk_affine_ras(image) -> np.ndarray:
    """Voxel->RAS affine of a SimpleITK image (ITK geometry is LPS)."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = RAS_FROM_LPS @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = RAS_FROM_LPS @ np.array(image.GetOrigin())
    return affine


@dataclass(frozen=True)
class Spec:
    """Segment spec with the fields of QSMReproducibilityLib.segio.SegmentSpec."""

    segment_id: str
    name: str
    color: tuple
    tags: dict = field(default_factory=dict)
    terminology: str = ""


def reading_tags(uid="uid-1", observer="obsA", reading="1", case_id="case01", status="started"):
    return {P + "Observer": observer, P + "Reading": reading, P + "CaseID": case_id, P + "SessionUID": uid,
            P + "Status": status}


def reading_specs(tags):
    return [
        Spec("lesion_right", "Hematoma right", (0.8, 0.2, 0.1), {**tags, P + "Role": "lesion", P + "Side": "right",
                                                                   P + "LesionType": "hematoma"}),
        Spec("lesion_left", "Hematoma left", (0.9, 0.5, 0.1), {**tags, P + "Role": "lesion", P + "Side": "left",
                                                                 P + "LesionType": "hematoma"}),
        Spec("csf", "CSF reference", (0.3, 0.6, 1.0), {**tags, P + "Role": "csf"}),
    ]


# ---------------------------------------------------------------------------------------------------
# Volumes


def test_volume_node_geometry_and_voxels_match_nibabel_and_itk(scene, tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    volume, affine = asymmetric_volume(), oblique_affine(**OBLIQUE)
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(volume, affine), path)
    loaded = nib.load(path)

    node = mrml.volume_node_from_array(scene, np.asarray(loaded.dataobj), loaded.affine, name="oblique")

    np.testing.assert_allclose(node_matrix(node), loaded.affine, atol=1e-6)
    image = sitk.ReadImage(str(path))
    np.testing.assert_allclose(node_matrix(node), itk_affine_ras(image), atol=1e-5)
    vtk_image = node.GetImageData()
    assert vtk_image.GetDimensions() == image.GetSize() == volume.shape
    for ijk in [(0, 0, 0), (12, 0, 0), (0, 8, 0), (0, 0, 5), (3, 2, 1), (2, 5, 2), (12, 8, 5)]:
        expected = image.GetPixel(*map(int, ijk))  # ITK indexes (i, j, k) like nibabel
        assert vtk_image.GetScalarComponentAsDouble(*ijk, 0) == pytest.approx(expected)
        assert volume[ijk] == pytest.approx(expected)

    array, affine_back = mrml.array_from_volume_node(node)
    np.testing.assert_array_equal(array, volume)
    np.testing.assert_allclose(affine_back, affine, atol=1e-9)


def test_parent_transform_is_folded_into_the_affine(scene):
    volume, affine = asymmetric_volume(), oblique_affine(**OBLIQUE)
    node = mrml.volume_node_from_array(scene, volume, affine, name="moved")
    shift = np.eye(4)
    shift[:3, 3] = [5.0, -2.0, 7.5]
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(mrml.matrix_from_affine(shift))
    node.SetAndObserveTransformNodeID(transform.GetID())

    _, world = mrml.array_from_volume_node(node)
    _, local = mrml.array_from_volume_node(node, world=False)
    np.testing.assert_allclose(world, shift @ affine, atol=1e-9)
    np.testing.assert_allclose(local, affine, atol=1e-9)


def _write_bids_gre(anat: Path, affine: np.ndarray, shape=(28, 26, 12), te_s=(0.005, 0.010, 0.015)) -> None:
    """A tiny multi-echo GRE: a sphere of tissue with a smooth field, BIDS names and sidecars."""
    from QSMReproducibilityLib.phantom import write_bids_megre

    anat.mkdir(parents=True)
    i, j, k = np.indices(shape)
    centre = (np.array(shape) - 1) / 2
    r = np.sqrt(((i - centre[0]) / 10) ** 2 + ((j - centre[1]) / 9) ** 2 + ((k - centre[2]) / 4.5) ** 2)
    tissue = r < 1.0
    field_hz = 4.0 * np.exp(-(((i - 10) / 3.0) ** 2 + ((j - 12) / 3.0) ** 2 + ((k - 6) / 2.0) ** 2))
    magnitude = np.stack([np.where(tissue, 1000.0 * np.exp(-te / 0.04), 5.0) for te in te_s], axis=-1)
    phase = np.stack([np.angle(np.exp(1j * (0.3 + 2 * np.pi * field_hz * te))) for te in te_s], axis=-1)
    write_bids_megre(anat, "sub-01", magnitude.astype(np.float32), phase.astype(np.float32), affine, te_s, 3.0,
                     compress=True)


def test_qsm_reconstructed_from_nifti_overlays_its_magnitude(scene, tmp_path):
    pipeline = pytest.importorskip("QSMReproducibilityLib.recon.pipeline")
    from QSMReproducibilityLib.io import load_volume

    affine = oblique_affine(**OBLIQUE)
    anat = tmp_path / "anat"
    _write_bids_gre(anat, affine)
    qsm_path = tmp_path / "qsm.nii.gz"
    pipeline.reconstruct_path(anat, qsm_path, method="tkd")

    magnitude_path = anat / "sub-01_echo-1_part-mag_MEGRE.nii.gz"
    magnitude_node = mrml.volume_node_from_array(scene, *load_volume(magnitude_path), name="magnitude")
    qsm_node = mrml.volume_node_from_array(scene, *load_volume(qsm_path), name="qsm")

    assert qsm_node.GetImageData().GetDimensions() == magnitude_node.GetImageData().GetDimensions() == (28, 26, 12)
    np.testing.assert_array_equal(node_matrix(qsm_node), node_matrix(magnitude_node))
    np.testing.assert_allclose(node_matrix(qsm_node), nib.load(magnitude_path).affine, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# Segmentations


def _reference_and_masks(scene):
    volume, affine = asymmetric_volume((24, 20, 9)), oblique_affine(**OBLIQUE)
    reference = mrml.volume_node_from_array(scene, volume, affine, name="qsm")
    lesion = np.zeros(volume.shape, bool)
    lesion[3:7, 4:6, 2:5] = True
    lesion[3, 6:9, 2] = True  # an asymmetric tail
    lesion[23, 19, 8] = True  # the last voxel of the grid
    csf = np.zeros(volume.shape, bool)
    csf[5:12, 5:9, 4:7] = True  # overlaps the lesion: segments must keep their own voxels
    csf[0, 0, 0] = True
    return reference, affine, {"lesion_right": lesion, "csf": csf}


def test_segmentation_masks_round_trip_on_the_reference_grid(scene):
    reference, _, masks = _reference_and_masks(scene)
    node = mrml.reading_segmentation_node(scene, reference, reading_specs(reading_tags()))

    mrml.set_segment_masks(node, masks, reference)
    back = mrml.segment_masks(node, reference)

    assert set(back) == {"lesion_right", "lesion_left", "csf"}
    for segment_id, mask in masks.items():
        assert back[segment_id].shape == mask.shape
        np.testing.assert_array_equal(back[segment_id], mask)
    assert not back["lesion_left"].any()
    # Only the reading's own nodes (and the scene's subject hierarchy) remain: no temporary labelmaps.
    classes = sorted(scene.GetNthNode(i).GetClassName() for i in range(scene.GetNumberOfNodes()))
    assert "vtkMRMLLabelMapVolumeNode" not in classes
    assert "vtkMRMLColorTableNode" not in classes


def test_seg_nrrd_geometry_and_voxels_read_by_pynrrd_and_the_library(scene, tmp_path):
    nrrd = pytest.importorskip("nrrd")
    reference, affine, masks = _reference_and_masks(scene)
    node = mrml.reading_segmentation_node(scene, reference, reading_specs(reading_tags()))
    mrml.set_segment_masks(node, masks, reference)
    path = mrml.save_segmentation_node(node, tmp_path / "reading.seg.nrrd")

    data, header = nrrd.read(path)
    spatial = [axis for axis, kind in enumerate(header["kinds"]) if kind == "domain"]
    directions_lps = np.asarray(header["space directions"], float)[spatial]
    assert header["space"] == "left-posterior-superior"
    np.testing.assert_allclose(RAS_FROM_LPS @ directions_lps.T, affine[:3, :3], atol=1e-6)
    offset = np.array([int(v) for v in header["Segmentation_ReferenceImageExtentOffset"].split()])
    origin_ras = RAS_FROM_LPS @ np.asarray(header["space origin"], float)
    np.testing.assert_allclose(origin_ras, affine[:3, :3] @ offset + affine[:3, 3], atol=1e-6)

    segio = pytest.importorskip("QSMReproducibilityLib.segio")
    stored = segio.read_seg_nrrd(path)
    on_grid = stored.on_grid(masks["csf"].shape, affine)
    for segment_id, mask in masks.items():
        np.testing.assert_array_equal(on_grid[segment_id], mask)


def test_library_written_seg_nrrd_loads_into_slicer_on_the_same_voxels(scene, tmp_path):
    segio = pytest.importorskip("QSMReproducibilityLib.segio")
    terminology = pytest.importorskip("QSMReproducibilityLib.terminology")
    reference, affine, masks = _reference_and_masks(scene)
    tags = terminology.reading_tags(observer="obsB", reading=2, case_id="case07", session_uid="uid-7",
                                    status="finished")
    specs = [terminology.lesion_segment("right", "calcification", tags), terminology.csf_segment(tags)]
    path = tmp_path / "library.seg.nrrd"
    segio.write_seg_nrrd(path, masks, affine, specs)

    node = mrml.load_segmentation_node(scene, path)
    back = mrml.segment_masks(node, reference)
    for segment_id, mask in masks.items():
        np.testing.assert_array_equal(back[segment_id], mask)
    assert mrml.reading_tags_of(node) == tags


def test_reading_tags_survive_a_seg_nrrd_save_and_load(scene, tmp_path):
    nrrd = pytest.importorskip("nrrd")
    reference, _, masks = _reference_and_masks(scene)
    tags = reading_tags(uid="3f2c9a7e-uid", observer="observerA", reading="2", case_id="VA-017")
    specs = reading_specs(tags)
    specs[0] = Spec(**{**specs[0].__dict__, "terminology": "Segmentation category and type - QSMReproducibility"
                                                        "~SCT^49755003^Morphologically Altered Structure"
                                                        "~SCT^35566002^Hematoma~^^~Anatomic codes - DICOM master list"
                                                        "~SCT^85234005^Vertebral artery~SCT^24028007^Right"})
    node = mrml.reading_segmentation_node(scene, reference, specs)
    assert mrml.reading_tags_of(node) == tags
    mrml.set_segment_masks(node, masks, reference)
    mrml.set_reading_status(node, "finished")
    path = mrml.save_segmentation_node(node, tmp_path / "tags.seg.nrrd")

    _, header = nrrd.read(path)
    raw_tags = {header[f"Segment{i}_ID"]: header[f"Segment{i}_Tags"] for i in range(3)}
    assert "QSMReproducibility.SessionUID:3f2c9a7e-uid|" in raw_tags["csf"]
    assert "QSMReproducibility.Status:finished|" in raw_tags["lesion_right"]

    other_scene = slicer.vtkMRMLScene()
    loaded = mrml.load_segmentation_node(other_scene, path)
    expected = {**tags, P + "Status": "finished"}
    assert mrml.reading_tags_of(loaded) == expected
    assert loaded.GetAttribute(P + "SessionUID") == "3f2c9a7e-uid"
    segmentation = loaded.GetSegmentation()
    for spec in specs:
        segment = segmentation.GetSegment(spec.segment_id)
        assert segment is not None and segment.GetName() == spec.name
        assert mrml.segment_tags(segment) == {**spec.tags, P + "Status": "finished"}
    import vtk

    terminology = vtk.reference("")
    segmentation.GetSegment("lesion_right").GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
    assert str(terminology) == specs[0].terminology


def test_tags_that_the_seg_nrrd_format_cannot_hold_are_refused(scene):
    reference, _, _ = _reference_and_masks(scene)
    with pytest.raises(ValueError, match="'|'"):
        mrml.reading_segmentation_node(scene, reference, reading_specs(reading_tags(observer="a|b")))
    with pytest.raises(ValueError, match="':'"):
        mrml.tag_node(reference, {"QSMReproducibility:Observer": "x"})


# ---------------------------------------------------------------------------------------------------
# Scene clean-up


def _node_ids(scene) -> set:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def test_removing_a_reading_leaves_nothing_of_it_and_keeps_the_other_reading(scene, tmp_path):
    baseline = _node_ids(scene)
    readings = {}
    for uid, observer in (("uid-A", "obsA"), ("uid-B", "obsB")):
        qsm = mrml.volume_node_from_array(scene, asymmetric_volume(), oblique_affine(**OBLIQUE), name=f"QSM {uid}",
                                          attributes={P + "SessionUID": uid})
        node = mrml.reading_segmentation_node(scene, qsm, reading_specs(reading_tags(uid=uid, observer=observer)))
        mrml.set_segment_masks(node, {"csf": asymmetric_volume() > 4000}, qsm)
        readings[uid] = (qsm, node)
    path = mrml.save_segmentation_node(readings["uid-A"][1], tmp_path / "a.seg.nrrd")
    reloaded = mrml.load_segmentation_node(scene, path)  # carries uid-A from its segment tags
    ids_of_a = {n.GetID() for n in mrml.reading_nodes(scene, "uid-A")}
    ids_of_b = {n.GetID() for n in mrml.reading_nodes(scene, "uid-B")}
    assert reloaded.GetID() in ids_of_a
    assert readings["uid-A"][1].GetDisplayNode().GetID() in ids_of_a
    assert reloaded.GetStorageNode().GetID() in ids_of_a

    removed = mrml.remove_reading_nodes(scene, "uid-A")

    assert removed == len(ids_of_a)
    assert not ids_of_a & _node_ids(scene)
    for index in range(scene.GetNumberOfNodes()):
        assert scene.GetNthNode(index).GetAttribute(P + "SessionUID") != "uid-A"
    assert ids_of_b <= _node_ids(scene)
    np.testing.assert_array_equal(mrml.segment_masks(readings["uid-B"][1], readings["uid-B"][0])["csf"],
                                  asymmetric_volume() > 4000)

    mrml.remove_reading_nodes(scene, "uid-B")
    leftover = {scene.GetNodeByID(i).GetClassName() for i in _node_ids(scene) - baseline}
    assert leftover <= {"vtkMRMLSubjectHierarchyNode"}


# ---------------------------------------------------------------------------------------------------
# Tables


def test_feature_table_node_keeps_numbers_and_text(scene):
    columns = {
        "case_id": ["VA-1", "VA-1", "VA-2"],
        "reading": [1, 2, 1],
        "feature": ["qsm_mean", "qsm_mean", "original_glcm_Contrast"],
        "value": [0.277, float("nan"), 1.5e-3],
        "reason": [None, "empty segment", None],
    }
    node = mrml.table_node_from_columns(scene, columns, name="features")
    table = node.GetTable()
    assert table.GetNumberOfColumns() == 5 and table.GetNumberOfRows() == 3
    assert table.GetColumnByName("value").GetClassName() == "vtkDoubleArray"
    assert table.GetColumnByName("case_id").GetClassName() == "vtkStringArray"
    assert table.GetColumnByName("value").GetValue(0) == pytest.approx(0.277)
    assert np.isnan(table.GetColumnByName("value").GetValue(1))
    assert table.GetColumnByName("reading").GetValue(2) == 1.0
    assert table.GetColumnByName("reason").GetValue(1) == "empty segment"
    assert table.GetColumnByName("reason").GetValue(0) == ""

    mrml.table_node_from_columns(scene, {"only": [1.0]}, name="features", node=node)
    assert node.GetTable().GetNumberOfColumns() == 1
