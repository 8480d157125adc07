"""Tests of the .seg.nrrd reader/writer against real MRML (the ``slicer-core`` wheel).

Each round trip is checked in physical space: a voxel of a segment read by Slicer is mapped to RAS with
Slicer's own image-to-world matrix and back into the NIfTI grid with nibabel's affine, so an axis flip,
a transposition or an LPS/RAS sign error anywhere makes the masks differ.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from QSMReproducibilityLib import fileio, segio, terminology
from QSMReproducibilityLib.errors import InputError

from affines import oblique_affine

REPO = Path(__file__).resolve().parents[2]
TERM_JSON = REPO / "Resources" / "QSMReproducibility.term.json"

SHAPE = (17, 13, 9)


def l_shape(shape=SHAPE) -> np.ndarray:
    """An L-shaped object off-centre: no flip or transposition of the grid maps it onto itself."""
    mask = np.zeros(shape, dtype=bool)
    mask[3:11, 4, 2] = True   # long arm along i
    mask[3, 4:9, 2] = True    # shorter arm along j
    mask[3, 4, 2:6] = True    # shortest arm along k
    return mask


def blob(center, radius, shape=SHAPE) -> np.ndarray:
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return ((grid - np.asarray(center)) ** 2).sum(-1) <= radius**2


def reading_specs(observer="O1", case_id="case-007", session_uid="abc123"):
    tags = terminology.reading_tags(observer=observer, reading=2, case_id=case_id, session_uid=session_uid,
                                    status="started")
    return [terminology.lesion_segment("right", "hematoma", tags), terminology.lesion_segment("left", "hematoma", tags),
            terminology.csf_segment(tags)]


# --------------------------------------------------------------------------------------------
# MRML helpers (slicer-core)


@pytest.fixture(scope="module")
def mrml():
    slicer = pytest.importorskip("slicer", reason="slicer-core (real MRML) is not installed")
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if not factory.GetConverterRules():
        # Without converter rules AddEmptySegment fails (as in a bare MRML application).
        factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
        factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())
    return slicer


def vtk_matrix(array):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix


def numpy_matrix(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def oriented_image(slicer, mask: np.ndarray, affine: np.ndarray):
    """A vtkOrientedImageData holding ``mask`` (indexed i, j, k) with image-to-world ``affine``."""
    import vtk
    from vtk.util import numpy_support

    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*mask.shape)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    image.SetImageToWorldMatrix(vtk_matrix(affine))
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    scalars[:] = mask.astype(np.uint8).ravel(order="F")  # VTK: i fastest
    image.Modified()
    return image


def slicer_segment_on_grid(slicer, seg_node, segment_id, shape, affine) -> np.ndarray:
    """Voxels of a Slicer segment mapped through RAS onto the grid ``(shape, affine)``."""
    from vtk.util import numpy_support

    image = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(seg_node, segment_id, image)
    label = seg_node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    extent = image.GetExtent()
    dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    out = np.zeros(shape, dtype=bool)
    if min(dims) <= 0:
        return out
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1]).transpose(2, 1, 0)
    ijk = np.argwhere(values == label) + [extent[0], extent[2], extent[4]]
    import vtk

    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    world = numpy_matrix(matrix) @ np.c_[ijk, np.ones(len(ijk))].T
    target = np.linalg.solve(affine, world)[:3].T
    index = np.rint(target).astype(int)
    assert np.abs(target - index).max() < 1e-3, "Slicer's voxels are not on the NIfTI lattice"
    assert (index >= 0).all() and (index < np.array(shape)).all()
    out[tuple(index.T)] = True
    return out


def save_with_storage_node(scene, node, path) -> None:
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    assert storage.WriteData(node) == 1


def load_with_storage_node(scene, path):
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    return node


def segment_tag(segment, key):
    import vtk

    value = vtk.reference("")
    found = segment.GetTag(key, value)
    return str(value) if found else None


# --------------------------------------------------------------------------------------------
# (1) written here, read by Slicer


@pytest.mark.parametrize("overlapping", [False, True], ids=["one-layer", "two-layers"])
def test_segio_file_read_by_slicer_storage_node(mrml, tmp_path, overlapping):
    slicer = mrml
    affine = oblique_affine()
    lesion_right = l_shape()
    lesion_left = blob((12, 9, 5), 1.5)
    csf = blob((6, 5, 2), 2.0) if overlapping else blob((14, 3, 7), 1.2)
    assert (csf & lesion_right).any() == overlapping
    masks = {"lesion_right": lesion_right, "lesion_left": lesion_left, "csf": csf}
    specs = reading_specs()
    path = tmp_path / "reading.seg.nrrd"
    segio.write_seg_nrrd(path, masks, affine, specs)

    node = load_with_storage_node(slicer.vtkMRMLScene(), path)
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfLayers() == (2 if overlapping else 1)
    assert [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())] == \
        ["lesion_right", "lesion_left", "csf"]
    for spec in specs:
        segment = segmentation.GetSegment(spec.segment_id)
        assert segment.GetName() == spec.name
        np.testing.assert_allclose(segment.GetColor(), spec.color, atol=1e-6)
        for key, value in spec.tags.items():
            assert segment_tag(segment, key) == value
        assert segment_tag(segment, "TerminologyEntry") == spec.terminology
        got = slicer_segment_on_grid(slicer, node, spec.segment_id, SHAPE, affine)
        np.testing.assert_array_equal(got, masks[spec.segment_id])


# --------------------------------------------------------------------------------------------
# (2) built and saved by Slicer, read here


def test_slicer_saved_segmentation_read_by_segio(mrml, tmp_path):
    slicer = mrml
    affine = oblique_affine(voxel_mm=(0.72, 0.9, 2.0))
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    node.SetAttribute("QSMReproducibility.Observer", "O2")
    segmentation = node.GetSegmentation()
    reference = oriented_image(slicer, np.zeros(SHAPE, bool), affine)
    segmentation.SetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
        slicer.vtkSegmentationConverter.SerializeImageGeometry(reference),
    )
    masks = {"lesion_left": l_shape(), "csf": blob((12, 8, 6), 2.0), "lesion_right": blob((4, 5, 3), 1.8)}
    masks["lesion_right"] &= ~masks["lesion_left"]
    colors = {"lesion_left": (0.9, 0.1, 0.2), "csf": (0.1, 0.5, 1.0), "lesion_right": (0.25, 0.75, 0.125)}
    tags = terminology.reading_tags(observer="O2", reading=1, case_id="C12", session_uid="f00d", status="started")
    for segment_id, mask in masks.items():
        assert segmentation.AddEmptySegment(segment_id, f"name of {segment_id}", colors[segment_id]) == segment_id
        assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            oriented_image(slicer, mask, affine), node, segment_id)
        segment = segmentation.GetSegment(segment_id)
        for key, value in tags.items():
            segment.SetTag(key, value)
        segment.SetTag("QSMReproducibility.Role", "csf" if segment_id == "csf" else "lesion")
    path = tmp_path / "from_slicer.seg.nrrd"
    save_with_storage_node(scene, node, path)

    data = segio.read_seg_nrrd(path)
    assert [s.segment_id for s in data.segments] == list(masks)
    np.testing.assert_allclose(data.affine_ras, affine, atol=1e-9)
    for spec in data.segments:
        assert spec.name == f"name of {spec.segment_id}"
        np.testing.assert_allclose(spec.color, colors[spec.segment_id], atol=1e-5)
        expected_tags = dict(tags, **{"QSMReproducibility.Role": "csf" if spec.segment_id == "csf" else "lesion"})
        assert dict(spec.tags) == expected_tags
        # Slicer gives every new segment its default terminology; it lands in .terminology, not in tags.
        assert spec.terminology == segment_tag(segmentation.GetSegment(spec.segment_id), "TerminologyEntry")
        np.testing.assert_array_equal(data.masks[spec.segment_id], masks[spec.segment_id])
    assert data.segmentation_fields["MasterRepresentation"] == "Binary labelmap"

    # Node attributes are not part of a .seg.nrrd: a fresh node read from the file has none of them,
    # which is why the reading metadata travels in the segment tags.
    reread = load_with_storage_node(slicer.vtkMRMLScene(), path)
    assert reread.GetAttribute("QSMReproducibility.Observer") is None
    assert segment_tag(reread.GetSegmentation().GetSegment("csf"), "QSMReproducibility.Observer") == "O2"


# --------------------------------------------------------------------------------------------
# (3) geometry: a segmentation drawn on a NIfTI volume in Slicer lines up with nibabel's array


def test_geometry_segmentation_over_nifti_volume_matches_nibabel_voxels(mrml, tmp_path):
    import vtk
    from vtk.util import numpy_support

    slicer = mrml
    affine = oblique_affine(voxel_mm=(-0.72, 0.9, 2.0))  # left-handed, as dcm2niix often writes
    truth = l_shape()
    volume_path = tmp_path / "qsm.nii.gz"
    nib.save(nib.Nifti1Image(truth.astype(np.int16) * 7, affine), volume_path)

    # Slicer loads the NIfTI with its own reader and draws the segment over the volume's voxels.
    scene = slicer.vtkMRMLScene()
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    volume_storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    volume_storage.SetFileName(str(volume_path))
    assert volume_storage.ReadData(volume) == 1
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    slicer_affine = numpy_matrix(ijk_to_ras)
    image = volume.GetImageData()
    dims = image.GetDimensions()
    slicer_voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1]).transpose(2, 1, 0)
    drawn = slicer_voxels > 0

    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    node.GetSegmentation().AddEmptySegment("lesion_right", "lesion", (1.0, 0.0, 0.0))
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        oriented_image(slicer, drawn, slicer_affine), node, "lesion_right")
    path = tmp_path / "drawn.seg.nrrd"
    save_with_storage_node(scene, node, path)

    data = segio.read_seg_nrrd(path)
    np.testing.assert_allclose(data.affine_ras, slicer_affine, atol=1e-6)
    on_nifti = data.on_grid(truth.shape, nib.load(volume_path).affine)["lesion_right"]
    np.testing.assert_array_equal(on_nifti, truth)
    assert on_nifti.sum() == truth.sum() == 8 + 4 + 3  # three arms sharing one corner voxel

    # Sensitivity: no flip or transposition of the grid maps the L-shape onto itself, so any axis
    # error in the chain above would have failed the comparison.
    for perm in itertools.permutations(range(3)):
        for flips in itertools.product([False, True], repeat=3):
            if perm == (0, 1, 2) and not any(flips):
                continue
            moved = np.transpose(truth, perm) if perm != (0, 1, 2) else truth
            moved = np.flip(moved, axis=[a for a in range(3) if flips[a]]) if any(flips) else moved
            assert moved.shape != truth.shape or not np.array_equal(moved, truth)

    # A reader that ignored the LPS->RAS conversion would see mirrored coordinates: it must not match.
    import nrrd

    array, header = nrrd.read(str(path), index_order="F")
    header["space"] = "right-anterior-superior"
    wrong = tmp_path / "wrong_space.seg.nrrd"
    nrrd.write(str(wrong), array, header, index_order="F")
    with pytest.raises(InputError):
        segio.read_seg_nrrd(wrong).on_grid(truth.shape, affine)

    # The other direction: the mask written here on nibabel's grid, read by Slicer and resampled by
    # Slicer onto the volume's own geometry, equals the volume's voxels.
    back = tmp_path / "back.seg.nrrd"
    tags = terminology.reading_tags(observer="O1", reading=1, case_id="C1", session_uid="u1", status="finished")
    segio.write_seg_nrrd(back, {"lesion_right": truth}, affine, [terminology.lesion_segment("right", "hematoma", tags)])
    reread = load_with_storage_node(scene, back)
    labelmap = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(reread, "lesion_right", labelmap)
    reference = oriented_image(slicer, np.zeros(dims, bool), slicer_affine)
    resampled = slicer.vtkOrientedImageData()
    assert slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        labelmap, reference, resampled)
    extent = resampled.GetExtent()
    sizes = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    values = numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars()).reshape(sizes[::-1]).transpose(2, 1, 0)
    placed = np.zeros(dims, bool)
    placed[extent[0]:extent[1] + 1, extent[2]:extent[3] + 1, extent[4]:extent[5] + 1] = values > 0
    np.testing.assert_array_equal(placed, drawn)
    np.testing.assert_array_equal(slicer_segment_on_grid(slicer, reread, "lesion_right", truth.shape, affine), truth)


# --------------------------------------------------------------------------------------------
# Terminology file, loaded by Slicer's own terminology logic


def test_term_json_loads_in_slicer_and_matches_segment_terminology(mrml):
    slicer = mrml
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    name = logic.LoadTerminologyFromFile(str(TERM_JSON))
    assert name == terminology.TERMINOLOGY_CONTEXT
    types = {}
    for ci in range(logic.GetNumberOfCategoriesInTerminology(name)):
        category = slicer.vtkSlicerTerminologyCategory()
        assert logic.GetNthCategoryInTerminology(name, ci, category)
        for ti in range(logic.GetNumberOfTypesInTerminologyCategory(name, category)):
            type_ = slicer.vtkSlicerTerminologyType()
            assert logic.GetNthTypeInTerminologyCategory(name, category, ti, type_)
            types[(category.GetCodeValue(), type_.GetCodeValue())] = (type_.GetCodeMeaning(),
                                                                      type_.GetRecommendedDisplayRGBValue())
    # SNOMED CT: hematoma 35566002, pathologic calcification 18115005, cerebrospinal fluid 65216001;
    # vertebral artery 85234005, right 24028007, left 7771000 (Slicer's DICOM master lists).
    expected = {
        ("right", "hematoma"): ("49755003", "35566002", "24028007"),
        ("left", "calcification"): ("49755003", "18115005", "7771000"),
    }
    for (side, lesion_type), (category_code, type_code, side_code) in expected.items():
        spec = terminology.lesion_segment(side, lesion_type, {})
        entry = slicer.vtkSlicerTerminologyEntry()
        assert logic.DeserializeTerminologyEntry(spec.terminology, entry)
        assert entry.GetTerminologyContextName() == name
        codes = (entry.GetCategoryObject().GetCodeValue(), entry.GetTypeObject().GetCodeValue())
        assert codes == (category_code, type_code)
        assert entry.GetRegionContextName() == "Anatomic codes - DICOM master list"
        assert entry.GetRegionObject().GetCodeValue() == "85234005"
        assert entry.GetRegionModifierObject().GetCodeValue() == side_code
        meaning, rgb = types[(category_code, type_code)]
        np.testing.assert_allclose(spec.color, np.array(rgb) / 255.0, atol=1e-6)
    csf = terminology.csf_segment({})
    entry = slicer.vtkSlicerTerminologyEntry()
    assert logic.DeserializeTerminologyEntry(csf.terminology, entry)
    assert types[(entry.GetCategoryObject().GetCodeValue(), entry.GetTypeObject().GetCodeValue())][0] == \
        "Cerebrospinal Fluid"
    assert entry.GetTypeObject().GetCodeValue() == "65216001"
    assert json.loads(TERM_JSON.read_text())["@schema"].endswith("segment-context-schema.json#")


# --------------------------------------------------------------------------------------------
# Without Slicer


def test_header_layout_matches_slicer_conventions(tmp_path):
    import nrrd

    affine = oblique_affine()
    masks = {"lesion_right": l_shape(), "lesion_left": blob((12, 9, 5), 1.5), "csf": blob((6, 5, 2), 2.0)}
    path = tmp_path / "h.seg.nrrd"
    segio.write_seg_nrrd(path, masks, affine, reading_specs())
    array, header = nrrd.read(str(path), index_order="F")
    assert header["space"] == "left-posterior-superior"
    assert header["kinds"] == ["list", "domain", "domain", "domain"] and array.shape == (2,) + SHAPE
    # LPS = diag(-1, -1, 1) RAS, each row one axis
    np.testing.assert_allclose(header["space directions"][1:], (np.diag([-1, -1, 1]) @ affine[:3, :3]).T, atol=1e-12)
    np.testing.assert_allclose(header["space origin"], [-12.5, 30.25, 41.0])
    assert header["Segment2_ID"] == "csf" and header["Segment2_Layer"] == "1" and header["Segment2_LabelValue"] == "1"
    assert header["Segment1_Layer"] == "0" and header["Segment1_LabelValue"] == "2"
    tags = header["Segment0_Tags"]
    assert tags.endswith("|") and "QSMReproducibility.CaseID:case-007|" in tags and "TerminologyEntry:" in tags
    assert header["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert header["Segmentation_ContainedRepresentationNames"] == "Binary labelmap|"
    assert header["Segmentation_ReferenceImageExtentOffset"] == "0 0 0"
    geometry = header["Segmentation_ConversionParameters"].split("Reference image geometry|")[1].split("|")[0]
    values = [float(v) for v in geometry.strip(";").split(";")]
    np.testing.assert_allclose(np.reshape(values[:16], (4, 4)), affine)
    assert values[16:] == [0, 16, 0, 12, 0, 8]


def test_on_grid_handles_crop_permutation_and_flip():
    affine = oblique_affine()
    truth = l_shape()
    # A file lattice made of the same voxel centres: axes (k, i, j), i reversed, cropped by 2/1/0 voxels.
    file_to_target = np.zeros((4, 4))
    file_to_target[3, 3] = 1
    file_to_target[2, 0] = 1           # file axis 0 -> target k
    file_to_target[0, 1] = -1          # file axis 1 -> target i, reversed
    file_to_target[1, 2] = 1           # file axis 2 -> target j
    file_to_target[:3, 3] = [14, 1, 2]  # target index of the file's first voxel
    file_affine = affine @ file_to_target
    file_shape = (6, 13, 11)
    file_mask = np.zeros(file_shape, bool)
    for idx in np.argwhere(truth):  # explicit voxel-by-voxel placement through the affines
        f = np.linalg.solve(file_affine, affine @ np.r_[idx, 1.0])[:3]
        file_mask[tuple(np.rint(f).astype(int))] = True
    data = segio.SegmentationData({"lesion_right": file_mask}, [], file_affine)
    np.testing.assert_array_equal(data.on_grid(truth.shape, affine)["lesion_right"], truth)

    shifted = affine.copy()
    shifted[:3, 3] += affine[:3, :3] @ [0.5, 0, 0]
    with pytest.raises(InputError, match="does not coincide"):
        data.on_grid(truth.shape, shifted)
    with pytest.raises(InputError, match="outside"):
        data.on_grid((5, 13, 9), affine)


def test_round_trip_without_slicer_and_validation(tmp_path):
    affine = oblique_affine()
    masks = {"lesion_right": l_shape(), "lesion_left": np.zeros(SHAPE, bool), "csf": blob((6, 5, 2), 2.0)}
    specs = reading_specs()
    path = tmp_path / "r.seg.nrrd"
    segio.write_seg_nrrd(path, masks, affine, specs)
    data = segio.read_seg_nrrd(path)
    assert data.segments == specs
    for key, mask in masks.items():
        np.testing.assert_array_equal(data.masks[key], mask)
    np.testing.assert_allclose(data.affine_ras, affine, atol=1e-12)

    before = path.read_bytes()
    bad_key = [segio.SegmentSpec("csf", "CSF", (0, 0, 1), {"a:b": "x"})]
    bad_value = [segio.SegmentSpec("csf", "CSF", (0, 0, 1), {"k": "x|y"})]
    for bad in (bad_key, bad_value):
        with pytest.raises(InputError):
            segio.write_seg_nrrd(path, {"csf": masks["csf"]}, affine, bad)
    with pytest.raises(InputError, match="do not match"):
        segio.write_seg_nrrd(path, {"csf": masks["csf"]}, affine, specs)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.seg.nrrd"]


def test_interrupted_write_leaves_previous_file(tmp_path, monkeypatch):
    import nrrd

    affine = oblique_affine()
    path = tmp_path / "x.seg.nrrd"
    spec = [terminology.csf_segment({})]
    segio.write_seg_nrrd(path, {"csf": blob((6, 5, 2), 2.0)}, affine, spec)
    before = path.read_bytes()

    def broken_write(handle, *args, **kwargs):
        handle.write(b"NRRD0004\npartial")
        raise OSError("disk full")

    monkeypatch.setattr(nrrd, "write", broken_write)
    with pytest.raises(OSError):
        segio.write_seg_nrrd(path, {"csf": blob((5, 5, 3), 1.0)}, affine, spec)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.seg.nrrd"]


def test_reading_tags_and_segment_specs():
    tags = terminology.reading_tags(observer="O1", reading=2, case_id="C3", session_uid="s", status="finished")
    assert tags == {
        "QSMReproducibility.Observer": "O1", "QSMReproducibility.Reading": "2", "QSMReproducibility.CaseID": "C3",
        "QSMReproducibility.SessionUID": "s", "QSMReproducibility.Status": "finished",
    }
    spec = terminology.lesion_segment("left", "calcification", tags)
    assert spec.segment_id == "lesion_left"
    assert spec.tags["QSMReproducibility.Side"] == "left" and spec.tags["QSMReproducibility.Role"] == "lesion"
    assert spec.terminology.split("~")[2] == "SCT^18115005^Calcification"
    assert terminology.csf_segment(tags).tags["QSMReproducibility.Role"] == "csf"
    with pytest.raises(InputError):
        terminology.reading_tags(observer="O|1", reading=1, case_id="C", session_uid="s", status="started")
    with pytest.raises(InputError):
        terminology.lesion_segment("middle", "hematoma", tags)


@pytest.mark.skipif(os.name == "nt", reason="liveness of a writer is judged by age on Windows")
def test_temporary_files_of_dead_writers_are_recognised(tmp_path):
    import subprocess
    import sys

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    host = fileio.host_tag()
    dead = tmp_path / f".r.seg.nrrd.{host}.{finished.pid}.x1y2.tmp"
    alive = tmp_path / f".r.seg.nrrd.{host}.{os.getppid()}.x1y2.tmp"
    other_host = tmp_path / f".r.seg.nrrd.elsewhere.{finished.pid}.x1y2.tmp"
    for path in (dead, alive, other_host):
        path.write_bytes(b"partial")
    assert fileio.temp_file_owner(dead) == (host, finished.pid)
    assert fileio.is_stale_temp_file(dead)
    assert not fileio.is_stale_temp_file(alive)
    assert not fileio.is_stale_temp_file(other_host)
    assert fileio.temp_file_owner(tmp_path / "r.seg.nrrd") is None
