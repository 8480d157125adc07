"""Readings drawn outside the reading session (ITK-SNAP, plain 3D Slicer, any label-map editor) handed in
through ``qsmrepro study finish-reading`` / ``import-reading``.

The label maps are written here with nibabel and with pynrrd directly (their geometry computed here from
the NIfTI and NRRD definitions, not with the project's writer); the expected masks are the ones drawn.
"""

from __future__ import annotations

import re

import nibabel as nib
import nrrd
import numpy as np
import pytest

from QSMReproducibilityLib import segio, terminology
from QSMReproducibilityLib.cli import main
from QSMReproducibilityLib.io import label_maps
from QSMReproducibilityLib.readings import Study

SHAPE = (12, 10, 6)
AFFINE = np.array([[-0.7, 0.05, 0.0, 40.0], [0.0, 0.68, 0.3, -52.0], [0.02, -0.1, 1.95, 11.0], [0, 0, 0, 1]])
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def lesion_mask() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[3:6, 4:6, 2:4] = True
    mask[6, 5, 3] = True
    return mask


def csf_mask() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[8:10, 6:8, 3] = True
    return mask


def nrrd_geometry(affine: np.ndarray) -> dict:
    """NRRD header fields of a voxel->RAS affine: one LPS vector per axis, LPS origin."""
    return {"space": "left-posterior-superior", "space directions": (LPS_FROM_RAS @ affine[:3, :3]).T,
            "space origin": LPS_FROM_RAS @ affine[:3, 3], "kinds": ["domain"] * 3}


@pytest.fixture
def study(tmp_path):
    qsm = tmp_path / "qsm.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(5).normal(0, 0.05, SHAPE).astype(np.float32), AFFINE), qsm)
    st = Study.create(tmp_path / "study", seed=3)
    for observer in ("O1", "O2"):
        st.add_observer(observer)
    st.add_case("c1", "hematoma", qsm)
    st.add_case("c2", "calcification", qsm)
    yield st
    st.close()


def cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def finish(capsys, study, case, segmentation, *extra) -> tuple[int, str]:
    return cli(capsys, "study", "finish-reading", study.root, "--observer", "O1", "--case", case,
               "--segmentation", segmentation, *extra)


def stored(study, case_id, observer="O1", reading=1) -> segio.SegmentationData:
    return segio.read_seg_nrrd(study.root / "readings" / case_id / f"{observer}_r{reading}.seg.nrrd")


def assert_stamped(data: segio.SegmentationData, session, expected_masks: dict) -> None:
    """The stored reading carries the session's tags and exactly the masks drawn, on the QSM grid."""
    assert {s.segment_id for s in data.segments} == set(expected_masks)
    np.testing.assert_allclose(data.affine_ras, AFFINE, atol=1e-6)
    for spec in data.segments:
        np.testing.assert_array_equal(data.masks[spec.segment_id], expected_masks[spec.segment_id])
        assert spec.tags[terminology.TAG_PREFIX + "SessionUID"] == session.session_uid
        assert spec.tags[terminology.TAG_PREFIX + "Observer"] == session.observer
        assert spec.tags[terminology.TAG_PREFIX + "CaseID"] == session.case_id
        assert spec.tags[terminology.TAG_PREFIX + "Status"] == "finished"
        assert spec.terminology  # this project's terminology, as for a reading made in the session


def test_nifti_label_map_with_the_default_convention(study, tmp_path, capsys):
    session = study.start_reading("O1", "c1")
    labels = np.zeros(SHAPE, np.int16)
    labels[lesion_mask()] = 1       # lesion_right
    labels[csf_mask()] = 3          # csf
    path = tmp_path / "itksnap.nii.gz"
    nib.save(nib.Nifti1Image(labels, AFFINE), path)
    code, err = finish(capsys, study, "c1", path)
    assert code == 0, err
    assert_stamped(stored(study, "c1"), session, {"lesion_right": lesion_mask(), "csf": csf_mask()})
    assert study.readings()[0].checksum


def test_nrrd_label_map_cropped_to_its_extent_with_a_mapping(study, tmp_path, capsys):
    """pynrrd label map holding only the drawn region (as editors save a crop), labels lesion_left=7, csf=9."""
    session = study.start_reading("O1", "c2")
    labels = np.zeros(SHAPE, np.uint8)
    labels[lesion_mask()] = 7
    labels[csf_mask()] = 9
    lo, hi = (2, 3, 1), (11, 9, 5)
    crop = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    crop_affine = AFFINE.copy()
    crop_affine[:3, 3] = (AFFINE @ [*lo, 1])[:3]
    path = tmp_path / "labels.nrrd"
    nrrd.write(str(path), crop, nrrd_geometry(crop_affine), index_order="F")

    code, err = finish(capsys, study, "c2", path)          # the default convention does not name 7 and 9
    assert code == 2 and re.search(r"label\(s\) 7, 9 are not in the label convention "
                                   r"lesion_right=1,lesion_left=2,csf=3; give the labels with --labels", err), err
    assert not (study.root / "readings" / "c2" / "O1_r1.seg.nrrd").exists()
    code, err = finish(capsys, study, "c2", path, "--labels", "lesion_left=7,CSF=9")
    assert code == 0, err
    assert_stamped(stored(study, "c2"), session, {"lesion_left": lesion_mask(), "csf": csf_mask()})
    side = next(s for s in stored(study, "c2").segments if s.segment_id == "lesion_left")
    assert side.tags[terminology.TAG_PREFIX + "LesionType"] == "calcification"
    assert side.tags[terminology.TAG_PREFIX + "Side"] == "left"


def test_untagged_seg_nrrd_from_the_project_writer_and_from_plain_slicer(study, tmp_path, capsys):
    # The project's own writer with no tags at all.
    session = study.start_reading("O1", "c1")
    plain = tmp_path / "untagged.seg.nrrd"
    segio.write_seg_nrrd(plain, {"lesion_right": lesion_mask(), "csf": csf_mask()}, AFFINE,
                         [segio.SegmentSpec("lesion_right", "lesion_right", (1.0, 0.0, 0.0), {}),
                          segio.SegmentSpec("csf", "csf", (0.0, 0.0, 1.0), {})])
    code, err = finish(capsys, study, "c1", plain)
    assert code == 0, err
    assert_stamped(stored(study, "c1"), session, {"lesion_right": lesion_mask(), "csf": csf_mask()})

    # A .seg.nrrd as plain 3D Slicer writes it (pynrrd here): generated IDs, segments named by the reader.
    session = study.start_reading("O1", "c2")
    layer = np.zeros(SHAPE, np.uint8)
    layer[lesion_mask()] = 1
    layer[csf_mask()] = 2
    header = nrrd_geometry(AFFINE)
    for index, (name, label) in enumerate((("Lesion Left", 1), ("CSF", 2))):
        header.update({f"Segment{index}_ID": f"Segment_{index + 1}", f"Segment{index}_Name": name,
                       f"Segment{index}_LabelValue": str(label), f"Segment{index}_Layer": "0",
                       f"Segment{index}_Color": "0.5 0.5 0.5", f"Segment{index}_Extent": "0 11 0 9 0 5",
                       f"Segment{index}_Tags": "TerminologyEntry:Segmentation category and type - 3D Slicer "
                                               "General Anatomy list~SCT^85756007^Tissue~SCT^85756007^Tissue~^^~"
                                               "Anatomic codes - DICOM master list~^^~^^|"})
    slicer_file = tmp_path / "slicer.seg.nrrd"
    nrrd.write(str(slicer_file), layer, header, index_order="F")
    code, err = finish(capsys, study, "c2", slicer_file)
    assert code == 0, err
    assert_stamped(stored(study, "c2"), session, {"lesion_left": lesion_mask(), "csf": csf_mask()})


def test_tags_of_another_session_observer_or_case_are_still_refused(study, tmp_path, capsys):
    session = study.start_reading("O1", "c1")
    refusals = {
        "O2": dict(observer="O2", case_id="c1", session_uid=session.session_uid),
        "c2": dict(observer="O1", case_id="c2", session_uid=session.session_uid),
        "feedface": dict(observer="O1", case_id="c1", session_uid="feedface"),
    }
    for value, identity in refusals.items():
        tags = terminology.reading_tags(reading=1, status="started", **identity)
        path = tmp_path / f"foreign_{value}.seg.nrrd"
        segio.write_seg_nrrd(path, {"lesion_right": lesion_mask(), "csf": csf_mask()}, AFFINE,
                             [terminology.lesion_segment("right", "hematoma", tags), terminology.csf_segment(tags)])
        code, err = finish(capsys, study, "c1", path)
        assert code == 2 and f"={value!r}" in err and "wrong file?" in err, err
    assert not session.segmentation_path.exists()
    assert study.open_sessions("O1")[0].session_uid == session.session_uid


def test_label_map_on_another_grid_is_refused_then_resampled_on_request(study, tmp_path, capsys):
    """Drawn on a grid twice as fine: refused as it is; --resample (nearest neighbour) gives back the QSM-grid
    masks exactly, because every QSM voxel centre is a voxel centre of the fine grid."""
    session = study.start_reading("O1", "c1")
    coarse = np.zeros(SHAPE, np.uint8)
    coarse[lesion_mask()] = 1
    coarse[csf_mask()] = 3
    fine = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    fine_affine = AFFINE.copy()
    fine_affine[:3, :3] = AFFINE[:3, :3] / 2
    path = tmp_path / "fine.nii.gz"
    nib.save(nib.Nifti1Image(fine, fine_affine), path)

    code, err = finish(capsys, study, "c1", path)
    assert code == 2 and "is not on the QSM grid of the case" in err and "--resample" in err, err
    assert not session.segmentation_path.exists()
    code, err = finish(capsys, study, "c1", path, "--resample")
    assert code == 0, err
    assert_stamped(stored(study, "c1"), session, {"lesion_right": lesion_mask(), "csf": csf_mask()})


def test_import_reading_of_a_label_map_with_its_dates(study, tmp_path, capsys):
    labels = np.zeros(SHAPE, np.int16)
    labels[lesion_mask()] = 2
    labels[csf_mask()] = 3
    path = tmp_path / "old_reading.nii"
    nib.save(nib.Nifti1Image(labels, AFFINE), path)
    code, err = cli(capsys, "study", "import-reading", study.root, "--observer", "O2", "--case", "c1", "--reading", 1,
                    "--segmentation", path, "--started", "2023-01-10T09:00:00Z", "--finished", "2023-01-10T09:20:00Z")
    assert code == 0, err
    record = study.readings()[0]
    assert (record.observer, record.started_at, record.imported) == ("O2", "2023-01-10T09:00:00Z", True)
    data = segio.read_seg_nrrd(record.segmentation_path)
    np.testing.assert_array_equal(data.masks["lesion_left"], lesion_mask())
    assert {s.tags[terminology.TAG_PREFIX + "SessionUID"] for s in data.segments} == {record.session_uid}


@pytest.mark.parametrize("mapping, message", [
    ("lesion_right:1", "is not NAME=VALUE"),
    ("lesion_right=1,vessel=2,csf=3", "'vessel' is not a reading segment"),
    ("lesion_right=1,lesion_left=1,csf=3", "label 1 is given to two segments"),
    ("lesion_right=0,csf=3", "must be a positive whole number"),
    ("lesion_right=1", "name the csf label"),
])
def test_malformed_label_mappings_are_refused(mapping, message):
    from QSMReproducibilityLib.errors import InputError

    with pytest.raises(InputError, match=message):
        label_maps.parse_label_mapping(mapping)


def test_segment_names_and_aliases():
    assert label_maps.parse_label_mapping(None) == {"lesion_right": 1, "lesion_left": 2, "csf": 3}
    for name, expected in (("CSF", "csf"), ("Lesion Right", "lesion_right"), ("lesion-left", "lesion_left"),
                           ("Hematoma right vertebral artery", "lesion_right"), ("right lesion", "lesion_right"),
                           ("Segment_1", None), ("lesion", None)):
        assert terminology.reading_segment_id(name) == expected, name
