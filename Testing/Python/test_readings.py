"""Tests of the study store: wash-out, blinding, immutability, validation, crash safety, CLI."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from QSMReproducibilityLib import segio, terminology
from QSMReproducibilityLib.errors import InputError, ReadingError
from QSMReproducibilityLib.cli.study import add_command as add_cli
from QSMReproducibilityLib.readings import Study

SHAPE = (12, 10, 6)
T0 = dt.datetime(2024, 1, 8, 9, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)


def qsm_affine() -> np.ndarray:
    affine = np.array([[-0.7, 0.05, 0.0, 40.0], [0.0, 0.68, 0.3, -52.0], [0.02, -0.1, 1.95, 11.0], [0, 0, 0, 1]])
    return affine


@pytest.fixture
def qsm_file(tmp_path) -> Path:
    path = tmp_path / "source" / "qsm.nii.gz"
    path.parent.mkdir()
    chi = np.random.default_rng(5).normal(0, 0.05, SHAPE).astype(np.float32)
    nib.save(nib.Nifti1Image(chi, qsm_affine()), path)
    return path


@pytest.fixture
def study(tmp_path, qsm_file) -> Study:
    st = Study.create(tmp_path / "study", seed=11)
    for observer in ("O1", "O2"):
        st.add_observer(observer)
    st.add_case("c1", "hematoma", qsm_file)
    st.add_case("c2", "calcification", qsm_file)
    st.add_case("c3", "hematoma", qsm_file)
    yield st
    st.close()


def lesion_mask(shift=0) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[3 + shift:6 + shift, 4:6, 2:4] = True
    return mask


def csf_mask() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[8:10, 6:8, 3] = True
    return mask


def write_reading(path, *, case_id, observer, reading, session_uid="import", lesion_type="hematoma",
                  affine=None, shape=SHAPE, lesion=None, csf=True, extra_tags=None) -> Path:
    """A reading's .seg.nrrd as the Slicer module saves it (tags from segio)."""
    affine = qsm_affine() if affine is None else affine
    tags = terminology.reading_tags(observer=observer, reading=reading, case_id=case_id, session_uid=session_uid,
                              status="started")
    tags.update(extra_tags or {})
    lesion = lesion_mask() if lesion is None else lesion
    masks = {"lesion_right": lesion[: shape[0], : shape[1], : shape[2]] if lesion.shape != shape else lesion}
    specs = [terminology.lesion_segment("right", lesion_type, tags)]
    if csf:
        masks["csf"] = csf_mask()[: shape[0], : shape[1], : shape[2]] if shape != SHAPE else csf_mask()
        specs.append(terminology.csf_segment(tags))
    segio.write_seg_nrrd(path, masks, affine, specs)
    return Path(path)


def session_file(tmp_path, session, **kwargs) -> Path:
    return write_reading(tmp_path / f"work_{session.session_uid}.seg.nrrd", case_id=session.case_id,
                         observer=session.observer, reading=session.reading, session_uid=session.session_uid,
                         lesion_type=session.lesion_type, **kwargs)


def snapshot(root: Path):
    """Database dump and every file with its hash: equal snapshots mean nothing changed."""
    connection = sqlite3.connect(root / "study.sqlite")
    dump = list(connection.iterdump())
    connection.close()
    files = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(root.rglob("*")) if p.is_file()}
    return dump, files


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# Wash-out


def test_washout_boundary_59_days_refused_60_days_open(study, tmp_path):
    first = study.start_reading("O1", "c1", now=T0)
    finished_at = T0 + dt.timedelta(minutes=12)
    study.finish_reading(first.session_uid, session_file(tmp_path, first), now=finished_at)
    for early in (finished_at + 59 * DAY, finished_at + 60 * DAY - dt.timedelta(seconds=1)):
        with pytest.raises(ReadingError, match=r"case c1, observer O1, reading 2: .*until 2024-03-08T09:12:00Z"):
            study.start_reading("O1", "c1", now=early)
    # 2024 is a leap year: 60 days after 8 January 09:12 is 8 March 09:12.
    second = study.start_reading("O1", "c1", now=finished_at + 60 * DAY)
    assert second.reading == 2 and second.started_at == "2024-03-08T09:12:00Z"
    # The other observer has no wash-out of their own yet.
    assert study.start_reading("O2", "c1", now=finished_at + DAY).reading == 1


def test_washout_override_requires_reason_and_is_audited(study, tmp_path):
    first = study.start_reading("O1", "c2", now=T0)
    study.finish_reading(first.session_uid, session_file(tmp_path, first),
                         now=T0 + dt.timedelta(minutes=5))
    with pytest.raises(ReadingError, match="reason"):
        study.start_reading("O1", "c2", now=T0 + 3 * DAY, override_washout=True)
    with pytest.raises(ReadingError, match="reason"):
        study.start_reading("O1", "c2", now=T0 + 3 * DAY, override_washout=True, reason="   ")
    session = study.start_reading("O1", "c2", now=T0 + 3 * DAY, override_washout=True,
                                  reason="observer leaves the hospital in March")
    record = study.finish_reading(session.session_uid, session_file(tmp_path, session),
                                  now=T0 + 3 * DAY + dt.timedelta(minutes=9))
    assert record.washout_override == "observer leaves the hospital in March"
    overrides = [e for e in study.audit_log() if e["action"] == "washout_overridden"]
    assert len(overrides) == 1
    assert overrides[0]["reason"] == "observer leaves the hospital in March"
    assert (overrides[0]["case_id"], overrides[0]["observer_id"], overrides[0]["reading"]) == ("c2", "O1", 2)
    assert study.verify() == []


def test_import_checks_washout_on_historical_dates(study, tmp_path):
    r1 = write_reading(tmp_path / "h1.seg.nrrd", case_id="c3", observer="O2", reading=1)
    r2 = write_reading(tmp_path / "h2.seg.nrrd", case_id="c3", observer="O2", reading=2)
    with pytest.raises(ReadingError, match="import reading 1 first"):
        study.import_reading("c3", "O2", 2, r2, started_at="2023-05-01T10:00:00Z", finished_at="2023-05-01T10:20:00Z")
    first = study.import_reading("c3", "O2", 1, r1, started_at="2023-03-01T09:00:00+01:00",
                                 finished_at="2023-03-01T09:30:00+01:00")
    assert (first.started_at, first.finished_at) == ("2023-03-01T08:00:00Z", "2023-03-01T08:30:00Z")
    assert first.imported
    # 59 days after reading 1 ended (2023-03-01 08:30 UTC + 59 d = 2023-04-29 08:30).
    with pytest.raises(ReadingError, match="wash-out"):
        study.import_reading("c3", "O2", 2, r2, started_at="2023-04-29T08:30:00Z", finished_at="2023-04-29T08:50:00Z")
    second = study.import_reading("c3", "O2", 2, r2, started_at="2023-04-30T08:30:00Z",
                                  finished_at="2023-04-30T08:50:00Z")
    assert second.reading == 2 and second.washout_override is None
    assert [(r.observer, r.reading) for r in study.readings()] == [("O2", 1), ("O2", 2)]
    assert study.verify() == []


def test_import_override_with_reason(study, tmp_path):
    r1 = write_reading(tmp_path / "h1.seg.nrrd", case_id="c1", observer="O1", reading=1)
    r2 = write_reading(tmp_path / "h2.seg.nrrd", case_id="c1", observer="O1", reading=2)
    study.import_reading("c1", "O1", 1, r1, started_at="2023-01-02T09:00:00Z", finished_at="2023-01-02T09:10:00Z")
    record = study.import_reading("c1", "O1", 2, r2, started_at="2023-02-02T09:00:00Z",
                                  finished_at="2023-02-02T09:10:00Z", override_washout=True,
                                  reason="protocol amendment 3: 4-week interval")
    assert record.washout_override == "protocol amendment 3: 4-week interval"
    assert any(e["action"] == "washout_overridden" for e in study.audit_log())
    assert study.verify() == []


# --------------------------------------------------------------------------------------------
# Blinding, order, immutability


def test_sessions_never_expose_other_readings(study, tmp_path):
    first = study.start_reading("O1", "c1", now=T0)
    assert not first.segmentation_path.exists()
    study.finish_reading(first.session_uid, session_file(tmp_path, first), now=T0 + dt.timedelta(minutes=8))
    other_observer = study.start_reading("O2", "c1", now=T0 + DAY)
    study.finish_reading(other_observer.session_uid, session_file(tmp_path, other_observer), now=T0 + 2 * DAY)
    again = study.start_reading("O1", "c1", now=T0 + 70 * DAY)
    for session in (other_observer, again):
        values = json.dumps({k: str(v) for k, v in dataclasses.asdict(session).items()})
        for record in study.readings():
            if record.session_uid != session.session_uid:
                assert str(record.segmentation_path) not in values
                assert record.segmentation_path.name not in values
    assert again.reading == 2 and not again.segmentation_path.exists()
    assert again.segmentation_path.parent == first.segmentation_path.parent
    assert again.segmentation_path != first.segmentation_path
    # Resuming an open session returns the same one, not a new reading.
    assert study.start_reading("O1", "c1", now=T0 + 71 * DAY).session_uid == again.session_uid


def test_reading_order_is_randomised_per_observer_and_round_and_reproducible(tmp_path, qsm_file):
    def make(root, seed):
        st = Study.create(root, seed=seed, washout_days=0)
        st.add_observer("O1")
        st.add_observer("O2")
        for i in range(8):
            st.add_case(f"case{i:02d}", "hematoma", qsm_file)
        return st

    a, b = make(tmp_path / "a", 7), make(tmp_path / "b", 7)
    picked = []
    for _ in range(8):
        session = a.start_reading("O1", now=T0)
        picked.append(session.case_id)
        a.finish_reading(session.session_uid, session_file(tmp_path, session), now=T0 + dt.timedelta(minutes=1))
    second_round = a.start_reading("O1", now=T0 + DAY)
    assert second_round.reading == 2
    assert picked == a.reading_order("O1", 1)          # sessions follow the recorded order
    assert sorted(picked) == [f"case{i:02d}" for i in range(8)]
    assert picked != sorted(picked)                    # 1 chance in 40320 to be sorted by luck
    assert second_round.case_id == a.reading_order("O1", 2)[0]
    assert a.reading_order("O1", 2) != picked
    assert b.start_reading("O1", now=T0).case_id == picked[0]   # same seed, same order
    assert b.start_reading("O2", now=T0).case_id == b.reading_order("O2", 1)[0]
    assert b.reading_order("O2", 1) != b.reading_order("O1", 1)
    c = make(tmp_path / "c", 8)
    c.start_reading("O1", now=T0)
    assert c.reading_order("O1", 1) != picked                   # another seed, another order
    assert sorted(c.reading_order("O1", 1)) == sorted(picked)
    for st in (a, b, c):
        st.close()


def test_finished_reading_is_immutable_and_amendment_keeps_original(study, tmp_path):
    session = study.start_reading("O1", "c1", now=T0)
    record = study.finish_reading(session.session_uid, session_file(tmp_path, session), now=T0 + DAY / 24)
    assert record.checksum == sha256(record.segmentation_path)
    before = snapshot(study.root)
    with pytest.raises(ReadingError, match=r"case c1, observer O1, reading 1 was already finished"):
        study.finish_reading(session.session_uid, session_file(tmp_path, session, lesion=lesion_mask(shift=2)),
                             now=T0 + DAY)
    assert snapshot(study.root) == before

    with pytest.raises(ReadingError, match="reason"):
        study.amend_reading("c1", "O1", 1, reason="")
    amendment = study.amend_reading("c1", "O1", 1, reason="CSF drawn in the wrong ventricle", now=T0 + 2 * DAY)
    assert amendment.amendment and amendment.reading == 1 and not amendment.segmentation_path.exists()
    assert amendment.segmentation_path != record.segmentation_path
    corrected = study.finish_reading(amendment.session_uid,
                                     session_file(tmp_path, amendment, lesion=lesion_mask(shift=1)), now=T0 + 2 * DAY)
    assert corrected.amends == session.session_uid
    assert corrected.amend_reason == "CSF drawn in the wrong ventricle"
    assert sha256(record.segmentation_path) == record.checksum          # original file untouched
    statuses = {r.session_uid: r.status for r in study.history()}
    assert statuses == {session.session_uid: "amended", amendment.session_uid: "finished"}
    assert [r.session_uid for r in study.readings()] == [amendment.session_uid]
    stored = segio.read_seg_nrrd(corrected.segmentation_path)
    np.testing.assert_array_equal(stored.masks["lesion_right"], lesion_mask(shift=1))
    assert study.verify() == []


def test_unknown_observer_or_case_is_refused_and_changes_nothing(study, tmp_path):
    seg = write_reading(tmp_path / "x.seg.nrrd", case_id="c9", observer="O1", reading=1)
    before = snapshot(study.root)
    with pytest.raises(ReadingError, match="observer 'O9' is not registered"):
        study.start_reading("O9", "c1", now=T0)
    with pytest.raises(ReadingError, match="observer 'O9' is not registered"):
        study.start_reading("O9", now=T0)
    with pytest.raises(ReadingError, match="case 'c9' is not in the study"):
        study.start_reading("O1", "c9", now=T0)
    with pytest.raises(ReadingError, match="case 'c9'"):
        study.import_reading("c9", "O1", 1, seg, started_at=T0, finished_at=T0 + DAY / 24)
    with pytest.raises(ReadingError, match="observer 'O9' is not registered"):
        study.import_reading("c1", "O9", 1, seg, started_at=T0, finished_at=T0 + DAY / 24)
    with pytest.raises(ReadingError, match="observer 'O9' is not registered"):
        study.open_session("O9", "c1")
    with pytest.raises(ReadingError, match="case 'c9' is not in the study"):
        study.open_session("O1", "c9")
    with pytest.raises(ReadingError, match="no open reading of case c1"):
        study.open_session("O1", "c1")
    with pytest.raises(ReadingError, match="no reading session"):
        study.finish_reading("0" * 32, seg)
    with pytest.raises(ReadingError, match="case c1 is already in the study"):
        study.add_case("c1", "hematoma", study.case("c2").qsm_path)
    with pytest.raises(InputError):
        study.add_observer("Dr. Smith / radiology")
    assert snapshot(study.root) == before      # database bytes and every file unchanged


# --------------------------------------------------------------------------------------------
# Validation at finish


def _bad_files(tmp_path, session):
    affine = qsm_affine()
    shifted = affine.copy()
    shifted[:3, 3] += affine[:3, :3] @ [0.5, 0.0, 0.0]
    coarser = affine.copy()
    coarser[:3, 0] *= 2.0
    garbage = tmp_path / "garbage.seg.nrrd"
    garbage.write_bytes(b"this is not a segmentation")
    common = dict(case_id=session.case_id, observer=session.observer, reading=session.reading,
                  session_uid=session.session_uid)
    return {
        "unreadable": (garbage, "not a readable NRRD"),
        "missing": (tmp_path / "does-not-exist.seg.nrrd", "does not exist"),
        "half-voxel shift": (write_reading(tmp_path / "b1.seg.nrrd", affine=shifted, **common), "not on the QSM grid"),
        "coarser voxels": (write_reading(tmp_path / "b2.seg.nrrd", affine=coarser, **common), "not on the QSM grid"),
        "empty lesion": (write_reading(tmp_path / "b3.seg.nrrd", lesion=np.zeros(SHAPE, bool), **common),
                         "'lesion_right' .* is empty"),
        "no csf": (write_reading(tmp_path / "b4.seg.nrrd", csf=False, **common), "no 'csf'"),
        "other case": (write_reading(tmp_path / "b5.seg.nrrd", **dict(common, case_id="c2")), "CaseID='c2'"),
        "other observer": (write_reading(tmp_path / "b6.seg.nrrd", **dict(common, observer="O2")), "Observer='O2'"),
        "other session": (write_reading(tmp_path / "b7.seg.nrrd", **dict(common, session_uid="feedface")),
                          "SessionUID='feedface'"),
        "wrong lesion type": (write_reading(tmp_path / "b8.seg.nrrd", lesion_type="calcification", **common),
                              "LesionType='calcification'"),
    }


def test_finish_rejects_invalid_segmentations_and_changes_nothing(study, tmp_path):
    session = study.start_reading("O1", "c1", now=T0)
    before = snapshot(study.root)
    for label, (path, message) in _bad_files(tmp_path, session).items():
        with pytest.raises(ReadingError, match=message) as caught:
            study.finish_reading(session.session_uid, path, now=T0 + DAY / 24)
        assert "case c1, observer O1, reading 1" in str(caught.value), label
        assert snapshot(study.root) == before, label
    assert not session.segmentation_path.exists()
    assert study.open_sessions("O1")[0].session_uid == session.session_uid


def test_slicer_style_reversed_slice_axis_is_stored_on_qsm_grid(study, tmp_path):
    session = study.start_reading("O2", "c3", now=T0)
    affine = qsm_affine()
    # Slicer reads a NIfTI whose affine has a negative determinant with the slice axis reversed and
    # saves its segmentation on that lattice: same voxels, k running the other way.
    flip_k = np.eye(4)
    flip_k[2, 2], flip_k[2, 3] = -1, SHAPE[2] - 1
    lesion = lesion_mask()
    lesion[3, 4, 2] = False  # make it asymmetric along k
    tags = session.tags()
    path = tmp_path / "slicer_lattice.seg.nrrd"
    segio.write_seg_nrrd(path, {"lesion_right": lesion[:, :, ::-1], "csf": csf_mask()[:, :, ::-1]}, affine @ flip_k,
                         [terminology.lesion_segment("right", "hematoma", tags), terminology.csf_segment(tags)])
    record = study.finish_reading(session.session_uid, path, now=T0 + DAY / 24)
    stored = segio.read_seg_nrrd(record.segmentation_path)
    np.testing.assert_allclose(stored.affine_ras, nib.load(record.qsm_path).affine, atol=1e-9)
    np.testing.assert_array_equal(stored.masks["lesion_right"], lesion)
    np.testing.assert_array_equal(stored.masks["csf"], csf_mask())
    assert all(s.tags["QSMReproducibility.Status"] == "finished" for s in stored.segments)


def test_verify_reports_orphans_tampering_and_missing_files(study, tmp_path):
    session = study.start_reading("O1", "c2", now=T0)
    record = study.finish_reading(session.session_uid, session_file(tmp_path, session),
                                  now=T0 + DAY / 24)
    other = study.start_reading("O2", "c1", now=T0)
    lost = study.finish_reading(other.session_uid, session_file(tmp_path, other), now=T0 + DAY / 24)
    assert study.verify() == []
    lost.segmentation_path.unlink()                # a database row without its file
    orphan = study.root / "readings" / "c2" / "O2_r1.seg.nrrd"
    orphan.write_bytes(record.segmentation_path.read_bytes())
    with open(record.segmentation_path, "ab") as handle:
        handle.write(b"\0")
    (study.root / "cases" / "c3" / "qsm.nii.gz").unlink()
    problems = study.verify()
    assert len(problems) == 4
    assert any("case c1, observer O2, reading 1: segmentation" in p and "is missing" in p for p in problems)
    assert any("orphan file" in p and "O2_r1.seg.nrrd" in p for p in problems)
    assert any("modified after the reading was finished" in p for p in problems)
    assert any("case c3: QSM map" in p and "missing" in p for p in problems)


def test_privacy_no_source_paths_or_names_stored(study, qsm_file):
    connection = sqlite3.connect(study.root / "study.sqlite")
    text = "\n".join(connection.iterdump())
    connection.close()
    assert str(qsm_file.parent) not in text
    assert [c.case_id for c in study.cases()] == ["c1", "c2", "c3"]
    assert all(c.qsm_checksum == sha256(c.qsm_path) for c in study.cases())
    assert "patient" not in json.dumps(study.summary()).lower()


def test_stored_qsm_keeps_voxels_and_geometry_but_no_identifying_header_text(study, tmp_path):
    import gzip

    # int16 with a scale factor, a description and a DICOM header extension (ecode 2) naming the patient
    raw = np.random.default_rng(2).integers(-3000, 3000, SHAPE).astype(np.int16)
    image = nib.Nifti1Image(raw, qsm_affine())
    image.header.set_slope_inter(1e-4, -0.01)
    image.header["descrip"] = b"DOE^JANE 1951-02-03"
    image.header["aux_file"] = b"ACC-445566"
    image.header.extensions.append(nib.nifti1.Nifti1Extension(2, b"(0010,0010) PN DOE^JANE\0\0\0\0\0\0\0\0\0"))
    source = tmp_path / "named.nii"
    nib.save(image, source)
    assert b"DOE^JANE" in source.read_bytes() and b"ACC-445566" in source.read_bytes()
    record = study.add_case("c4", "hematoma", source)
    stored_bytes = gzip.decompress(record.qsm_path.read_bytes())
    assert b"DOE" not in stored_bytes and b"ACC-445566" not in stored_bytes
    stored = nib.load(record.qsm_path)
    original = nib.load(source)
    assert stored.get_data_dtype() == np.int16 and len(stored.header.extensions) == 0
    np.testing.assert_array_equal(np.asarray(stored.dataobj.get_unscaled()), raw)      # voxels byte for byte
    np.testing.assert_array_equal(stored.get_fdata(), original.get_fdata())             # same scaling
    np.testing.assert_array_equal(stored.affine, original.affine)
    assert study.verify() == []


def test_gre_fingerprint_identifies_files_not_their_names(tmp_path):
    from QSMReproducibilityLib.readings.fingerprint import gre_fingerprint

    first = tmp_path / "DOE_JANE" / "series"
    first.mkdir(parents=True)
    for n in range(3):
        (first / f"IM{n:04d}.dcm").write_bytes(bytes([n]) * 100)
    copy = tmp_path / "anonymous"
    copy.mkdir()
    for n in range(3):
        (copy / f"slice-{9 - n}").write_bytes(bytes([n]) * 100)
    digests = sorted(hashlib.sha256(bytes([n]) * 100).hexdigest() for n in range(3))
    expected = f"sha256:{hashlib.sha256(chr(10).join(digests).encode()).hexdigest()} (3 files)"
    assert gre_fingerprint(first) == gre_fingerprint(copy) == expected
    (copy / "slice-9").write_bytes(b"\1" + bytes(99))
    assert gre_fingerprint(copy) != expected
    assert "DOE" not in gre_fingerprint(first)


def test_identifiers_only_on_request_with_an_audited_purpose(study, qsm_file):
    study.add_case("c5", "calcification", qsm_file, patient_name="DOE^JANE", gre_reference="PACS ACC-445566")
    assert "DOE" not in repr(study.case("c5")) and "DOE" not in json.dumps(study.summary())
    before = snapshot(study.root)
    with pytest.raises(ReadingError, match="needs a purpose"):
        study.identifiers(purpose=" ")
    assert snapshot(study.root) == before
    named = study.identifiers(purpose="registry linkage")
    assert named["c5"] == {"patient_name": "DOE^JANE", "gre_reference": "PACS ACC-445566"}
    assert named["c1"] == {"patient_name": None, "gre_reference": None}
    entry = study.audit_log()[-1]
    assert (entry["action"], entry["reason"]) == ("identifiers_exported", "registry linkage")


# --------------------------------------------------------------------------------------------
# Crash safety and concurrency (separate processes)

_CHILD = r"""
import sys
import nibabel, nrrd  # imported before "ready" so that both finishes start together on "go"
from QSMReproducibilityLib.readings import Study
study = Study.open(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
study.finish_reading(sys.argv[2], sys.argv[3], now="2024-01-08T10:00:00Z")
print("done", flush=True)
"""


def _child(root, session_uid, segmentation):
    process = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), session_uid, str(segmentation)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert process.stdout.readline().strip() == "ready"
    return process


def _many_sessions(tmp_path, qsm_file, n):
    root = tmp_path / "crash-study"
    st = Study.create(root, seed=1)
    st.add_observer("O1")
    sessions = []
    for i in range(n):
        st.add_case(f"k{i:02d}", "hematoma", qsm_file)
        session = st.start_reading("O1", f"k{i:02d}", now=T0)
        sessions.append((session, session_file(tmp_path, session)))
    return st, root, sessions


def _forked_finish(root, session_uid, segmentation) -> tuple[int, int]:
    """Fork a process that opens the study and finishes one reading; returns its pid and a pipe
    from which the child's ``time.perf_counter()`` at the moment the reading was stored can be read.

    Forking (instead of starting an interpreter) puts the kill window on the finish itself and
    keeps thirty kills within a few seconds. The parent holds no open database connection here.
    The child writes files as a slow disk would, in small flushed pieces, so that many kills land
    while a segmentation file is half written.
    """
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            import io

            import nrrd

            write = nrrd.write

            def slow_write(handle, *args, **kwargs):
                buffer = io.BytesIO()
                write(buffer, *args, **kwargs)
                data = buffer.getvalue()
                for start in range(0, len(data), 256):
                    handle.write(data[start:start + 256])
                    handle.flush()
                    time.sleep(0.001)

            nrrd.write = slow_write
            os.close(done_read)
            study = Study.open(root)
            study.finish_reading(session_uid, segmentation, now="2024-01-08T10:00:00Z")
            study.close()
            os.write(done_write, repr(time.perf_counter()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(done_write)
    return pid, done_read


def _exit_status(pid) -> int:
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_killed_finishes_leave_consistent_store(tmp_path, qsm_file):
    n_kills = 30
    st, root, sessions = _many_sessions(tmp_path, qsm_file, n_kills + 8)
    st.close()
    # Calibrate: how long a whole finish takes in a child (median of three).
    durations = []
    for session, seg_file in sessions[n_kills:n_kills + 3]:
        start = time.perf_counter()
        pid, done = _forked_finish(root, session.session_uid, seg_file)
        durations.append(float(os.read(done, 64)) - start)   # a monotonic clock shared by both processes
        os.close(done)
        assert _exit_status(pid) == 0
    duration = sorted(durations)[1]

    spare = iter(sessions[n_kills + 3:])
    # Kill times sweep from "at once" to 1.3 x the finish time, then longer waits if no kill has
    # yet landed after the commit (a loaded machine).
    delays = [1.3 * duration * i / (n_kills - 1) for i in range(n_kills)]
    plan = list(zip(sessions[:n_kills], delays))
    outcomes = []
    while plan:
        (session, seg_file), delay = plan.pop(0)
        pid, done = _forked_finish(root, session.session_uid, seg_file)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        killed = _exit_status(pid) == -signal.SIGKILL
        os.close(done)
        debris = sum(1 for p in root.rglob("*.tmp"))

        study = Study.open(root)            # sweeps the killed writer's temporary file
        assert study.verify() == [], f"after killing the finish of {session.case_id} at {1000 * delay:.1f} ms"
        row = next(r for r in study.history() if r.session_uid == session.session_uid)
        if row.status == "started":
            stored = row.segmentation_path.exists()
            outcomes.append("killed after the file, before the commit" if stored else "killed before the file")
            assert row.checksum is None and row.finished_at is None
            if stored:  # renamed into place whole: a complete segmentation, never a half file
                np.testing.assert_array_equal(segio.read_seg_nrrd(row.segmentation_path).masks["lesion_right"],
                                              lesion_mask())
            record = study.finish_reading(session.session_uid, seg_file, now=T0 + DAY)   # the retry lands
            assert sha256(record.segmentation_path) == record.checksum
        else:
            assert row.status == "finished" and sha256(row.segmentation_path) == row.checksum
            outcomes.append("killed after the commit" if killed else "finished before the kill")
        if debris:
            outcomes.append("temporary file swept")
        study.close()
        if not plan and not any(o.startswith(("killed after the commit", "finished")) for o in outcomes):
            extra = next(spare, None)
            if extra is not None:
                plan.append((extra, 2 * max(delay, duration)))

    assert "killed before the file" in outcomes
    assert any(o.startswith(("killed after the commit", "finished")) for o in outcomes)
    study = Study.open(root)
    assert study.verify() == []
    records = study.readings()
    finished = {r.session_uid for r in records}
    assert {s.session_uid for s, _ in sessions[:n_kills]} <= finished
    for record in records:
        assert sha256(record.segmentation_path) == record.checksum
        np.testing.assert_array_equal(segio.read_seg_nrrd(record.segmentation_path).masks["lesion_right"],
                                      lesion_mask())
    leftovers = [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert leftovers == []
    study.close()
    tally = ", ".join(f"{k}: {outcomes.count(k)}" for k in sorted(set(outcomes)))
    print(f"finish took {1000 * duration:.0f} ms; {n_kills} kills: {tally}")


def test_two_processes_finish_different_readings_concurrently(tmp_path, qsm_file):
    st, root, sessions = _many_sessions(tmp_path, qsm_file, 2)
    st.close()
    children = [_child(root, s.session_uid, f) for s, f in sessions]
    for process in children:
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in children:
        assert process.stdout.readline().strip() == "done"
        assert process.wait(timeout=60) == 0
    study = Study.open(root)
    assert sorted(r.case_id for r in study.readings()) == ["k00", "k01"]
    assert study.verify() == []
    study.close()


# --------------------------------------------------------------------------------------------
# Command line


def _run(argv) -> int:
    parser = argparse.ArgumentParser(prog="qsmrepro")
    sub = parser.add_subparsers()
    add_cli(sub)
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_study_workflow(tmp_path, qsm_file, capsys, monkeypatch):
    root = tmp_path / "cli-study"
    assert _run(["study", "init", str(root), "--washout-days", "30", "--seed", "4"]) == 0
    assert _run(["study", "add-observer", str(root), "O1"]) == 0
    assert _run(["study", "add-case", str(root), "--case-id", "c1", "--lesion-type", "hematoma",
                 "--qsm", str(qsm_file)]) == 0

    assert _run(["study", "add-case", str(root), "--case-id", "c2", "--lesion-type", "calcification",
                 "--qsm", str(qsm_file)]) == 0
    capsys.readouterr()

    assert _run(["study", "start-reading", str(root), "--observer", "O1", "--case", "c1", "--json"]) == 0
    session = json.loads(capsys.readouterr().out)
    assert session["case_id"] == "c1" and not Path(session["segmentation_path"]).exists()
    assert session["tags"]["QSMReproducibility.SessionUID"] == session["session_uid"]
    seg = write_reading(tmp_path / "cli.seg.nrrd", case_id="c1", observer="O1", reading=1,
                        session_uid=session["session_uid"])
    assert _run(["study", "finish-reading", str(root), "--observer", "O1", "--case", "c1",
                 "--segmentation", str(seg)]) == 0
    with pytest.raises(ReadingError, match="reading 1 was already finished on .* cannot be changed"):
        _run(["study", "finish-reading", str(root), "--observer", "O1", "--case", "c1", "--segmentation", str(seg)])
    with pytest.raises(ReadingError, match="wash-out"):
        _run(["study", "start-reading", str(root), "--observer", "O1", "--case", "c1"])
    first_file = root / "readings" / "c1" / "O1_r1.seg.nrrd"
    first_sha = sha256(first_file)
    capsys.readouterr()
    assert _run(["study", "amend-reading", str(root), "--observer", "O1", "--case", "c1", "--reading", "1",
                 "--reason", "lesion extended into the next slice", "--json"]) == 0
    amendment = json.loads(capsys.readouterr().out)
    assert amendment["amendment"] and amendment["reading"] == 1 and "O1_r1.seg.nrrd" not in json.dumps(amendment)
    fixed = write_reading(tmp_path / "fixed.seg.nrrd", case_id="c1", observer="O1", reading=1,
                          session_uid=amendment["session_uid"], lesion=lesion_mask(shift=1))
    assert _run(["study", "finish-reading", str(root), "--observer", "O1", "--case", "c1",
                 "--segmentation", str(fixed)]) == 0
    assert sha256(first_file) == first_sha                                 # the original stays as it was
    with Study.open(root) as reopened:
        current = [r for r in reopened.readings() if r.case_id == "c1"]
        assert [(r.session_uid, r.amend_reason) for r in current] == \
            [(amendment["session_uid"], "lesion extended into the next slice")]
        assert [r.status for r in reopened.history() if r.case_id == "c1"] == ["amended", "finished"]

    old = write_reading(tmp_path / "old.seg.nrrd", case_id="c2", observer="O1", reading=1,
                        lesion_type="calcification")
    assert _run(["study", "import-reading", str(root), "--observer", "O1", "--case", "c2", "--reading", "1",
                 "--segmentation", str(old), "--started", "2023-06-01T08:00:00Z",
                 "--finished", "2023-06-01T08:15:00Z"]) == 0
    capsys.readouterr()
    assert _run(["study", "status", str(root), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["washout_days"] == 30 and status["cases"] == 2
    assert status["observers"]["O1"]["finished_by_reading"] == {"1": 2, "2": 0}
    assert _run(["study", "verify", str(root)]) == 0

    import QSMReproducibilityLib.radiomics as radiomics
    import pandas as pd

    def fake_extract(readings, **kwargs):
        return pd.DataFrame([dict(case_id=r.case_id, observer=r.observer, reading=r.reading,
                                  feature="qsm_mean", value=0.1) for r in readings])

    monkeypatch.setattr(radiomics, "extract_readings", fake_extract)
    out = tmp_path / "features.csv"
    assert _run(["study", "export", str(root), "-o", str(out)]) == 0
    table = pd.read_csv(out)
    assert sorted(table["case_id"]) == ["c1", "c2"]

    (root / "readings" / "c1" / "stray.seg.nrrd").write_bytes(b"x")
    capsys.readouterr()
    assert _run(["study", "verify", str(root)]) == 1
    assert "orphan file" in capsys.readouterr().out
