"""A reading made in real MRML (the ``slicer-core`` wheel) stored through the study and read back.

The QSM is loaded by Slicer's own NIfTI reader; the segmentation node is built and tagged (node
attributes and segment tags) with the module's MRML glue, saved by Slicer's writer, finished into
the study, then read back by Slicer, by the library and by SimpleITK (LPS). The lesion is an
asymmetric block on an oblique, left-handed grid, so a flipped or swapped axis anywhere cannot pass.
References outside the code under test: Slicer's IJK->RAS matrix, nibabel's affine, SimpleITK's
physical-point mapping and the known voxel values of the QSM.
"""

from __future__ import annotations


import nibabel as nib
import numpy as np
import pytest

from mrml_support import mrml, slicer  # skips this module where slicer-core is absent

from QSMReproducibilityLib import segio  # noqa: E402
from QSMReproducibilityLib.terminology import TAG_PREFIX, csf_segment, lesion_segment  # noqa: E402
from QSMReproducibilityLib.readings import Study  # noqa: E402

from affines import oblique_affine  # noqa: E402


SHAPE = (17, 13, 9)
P = TAG_PREFIX


def asymmetric_lesion() -> np.ndarray:
    """Three blocks of different lengths meeting at one corner: no flip or transposition maps it onto itself."""
    mask = np.zeros(SHAPE, bool)
    mask[3:10, 4:6, 2:4] = True     # long along i
    mask[3:5, 6:10, 2:4] = True     # medium along j
    mask[3:5, 4:6, 4:7] = True      # short along k
    return mask


def csf_region() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[12:15, 9:12, 5:7] = True
    return mask


def onto_slicer_grid(mask: np.ndarray, affine: np.ndarray, slicer_affine: np.ndarray, shape) -> np.ndarray:
    """The voxels of ``mask`` (nibabel grid) on Slicer's IJK grid, through the physical position."""
    ijk = np.argwhere(mask)
    ras = affine @ np.c_[ijk, np.ones(len(ijk))].T
    target = np.linalg.solve(slicer_affine, ras)[:3].T
    index = np.rint(target).astype(int)
    assert np.abs(target - index).max() < 1e-4
    out = np.zeros(shape, bool)
    out[tuple(index.T)] = True
    return out


def test_slicer_reading_through_the_study_keeps_node_and_segment_tags_and_voxels(tmp_path):
    mrml.register_segmentation_converters()
    affine = oblique_affine(voxel_mm=(-0.72, 0.9, 2.0), rotation_deg=(-12.0, 0.0, 25.0),
                            origin_mm=(14.5, -33.0, 21.0))
    i, j, k = np.indices(SHAPE)
    chi = (0.02 * i - 0.013 * j + 0.007 * k).astype(np.float32)   # every voxel distinct along each axis
    lesion, csf = asymmetric_lesion(), csf_region()
    chi[lesion] += 0.3
    nib.save(nib.Nifti1Image(chi, affine), tmp_path / "qsm.nii.gz")

    study = Study.create(tmp_path / "study")
    study.add_observer("O1")
    study.add_case("VA-017", "hematoma", tmp_path / "qsm.nii.gz")
    session = study.start_reading("O1", "VA-017")

    # Slicer: the study's QSM through Slicer's reader; the reading drawn on Slicer's own voxel grid.
    scene = slicer.vtkMRMLScene()
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(session.qsm_path))
    assert storage.ReadData(volume) == 1
    slicer_voxels, slicer_affine = mrml.array_from_volume_node(volume, world=False)
    drawn = {"lesion_right": onto_slicer_grid(lesion, affine, slicer_affine, slicer_voxels.shape),
             "csf": onto_slicer_grid(csf, affine, slicer_affine, slicer_voxels.shape)}
    np.testing.assert_allclose(slicer_voxels[drawn["lesion_right"]].sum(), chi[lesion].sum(), rtol=1e-6)
    specs = [lesion_segment("right", "hematoma", session.tags()), csf_segment(session.tags())]
    node = mrml.reading_segmentation_node(scene, volume, specs)
    assert {key: node.GetAttribute(key) for key in session.tags()} == session.tags()      # tags on the node
    mrml.set_segment_masks(node, drawn, volume)
    saved = mrml.save_segmentation_node(node, tmp_path / "drawn.seg.nrrd")
    record = study.finish_reading(session.session_uid, saved)

    # Read back by Slicer: node attributes and segment tags intact, Status now "finished".
    expected = dict(session.tags(), **{P + "Status": "finished"})
    other_scene = slicer.vtkMRMLScene()
    loaded = mrml.load_segmentation_node(other_scene, record.segmentation_path)
    assert {key: loaded.GetAttribute(key) for key in expected} == expected
    segmentation = loaded.GetSegmentation()
    assert sorted(segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())) == \
        ["csf", "lesion_right"]
    for spec in specs:
        segment = segmentation.GetSegment(spec.segment_id)
        assert mrml.segment_tags(segment) == dict(spec.tags, **{P + "Status": "finished"})
        import vtk

        terminology = vtk.reference("")
        assert segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
        assert str(terminology) == spec.terminology
    other_volume = other_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    other_storage = other_scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    other_storage.SetFileName(str(record.qsm_path))
    assert other_storage.ReadData(other_volume) == 1
    back = mrml.segment_masks(loaded, other_volume)
    for segment_id, mask in drawn.items():
        np.testing.assert_array_equal(back[segment_id], mask)

    # Read back by the library on nibabel's grid of the QSM.
    data = segio.read_seg_nrrd(record.segmentation_path)
    np.testing.assert_allclose(data.affine_ras, affine, atol=1e-6)
    np.testing.assert_array_equal(data.masks["lesion_right"], lesion)
    np.testing.assert_array_equal(data.masks["csf"], csf)

    # Read back by SimpleITK (LPS): each labelled voxel's physical point lands on the QSM voxel with
    # the value expected there.
    import SimpleITK as sitk

    labels = sitk.ReadImage(str(record.segmentation_path))
    qsm_itk = sitk.ReadImage(str(record.qsm_path))
    qsm_values = sitk.GetArrayFromImage(qsm_itk)          # indexed (k, j, i)
    label_values = sitk.GetArrayFromImage(labels)
    assert labels.GetDimension() == 3                     # lesion and CSF share one label layer
    label_of = {labels.GetMetaData(f"Segment{n}_ID"): int(labels.GetMetaData(f"Segment{n}_LabelValue"))
                for n in range(2)}
    for segment_id, truth in (("lesion_right", lesion), ("csf", csf)):
        found = []
        for kk, jj, ii in np.argwhere(label_values == label_of[segment_id]):
            point = labels.TransformIndexToPhysicalPoint((int(ii), int(jj), int(kk)))
            index = qsm_itk.TransformPhysicalPointToIndex(point)
            found.append(qsm_values[index[2], index[1], index[0]])
        assert len(found) == truth.sum()
        assert sorted(found) == pytest.approx(sorted(chi[truth]), abs=1e-6)
