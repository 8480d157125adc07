"""``qsmrepro study`` end to end: real reconstruction of a phantom, every sub-command, the study folder,
privacy of status and export, a DICOM input with patient identifiers, and the error path of the CLI.

Numbers from outside the code under test: the phantom's true lesion susceptibility (relative to CSF),
the phantom's affine, a SHA-256 fingerprint recomputed here with hashlib, and the identifiers written
into the DICOM headers here.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import sqlite3
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from QSMReproducibilityLib import segio, terminology
from QSMReproducibilityLib.cli import main
from QSMReproducibilityLib.phantom import CSF, LESION_LABEL, simulate_case
from QSMReproducibilityLib.readings import Study

from cli_driver import qsmrepro, run_commands
from gre_dicom import write_dicom_gre

CONTRACT_COLUMNS = ["case_id", "lesion_id", "lesion_type", "observer", "reading", "feature", "value"]
PATIENT_NAME = "DOE^JANE"


def run(capsys, *argv) -> tuple[int, str, str]:
    """``qsmrepro ARGV`` in this process (the same ``main`` the console script calls)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ok(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return out


def refused(capsys, *argv, match: str) -> str:
    """The command fails with exit code 2 and exactly one ``qsmrepro: error:`` line."""
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qsmrepro: error: "), err
    assert re.search(match, lines[0]), lines[0]
    return lines[0]


def fingerprint_of(folder: Path) -> str:
    """SHA-256 over the sorted SHA-256 digests of the folder's files (the documented definition)."""
    digests = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file())
    return f"sha256:{hashlib.sha256(chr(10).join(digests).encode()).hexdigest()} ({len(digests)} files)"


def draw_reading(path, session: dict, labels: np.ndarray, affine: np.ndarray, side: str, lesion_type: str) -> Path:
    """What the Slicer module saves for a reading: the lesion and CSF segments with the session's tags."""
    tags = terminology.reading_tags(observer=session["observer"], reading=session["reading"],
                                    case_id=session["case_id"], session_uid=session["session_uid"], status="started")
    segio.write_seg_nrrd(path, {f"lesion_{side}": labels == LESION_LABEL[side], "csf": labels == CSF}, affine,
                         [terminology.lesion_segment(side, lesion_type, tags), terminology.csf_segment(tags)])
    return Path(path)


def study_text(root: Path) -> bytes:
    """Everything a study folder holds, decompressed: database dump and every file."""
    connection = sqlite3.connect(root / "study.sqlite")
    parts = ["\n".join(connection.iterdump()).encode()]
    connection.close()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            parts.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return b"\n".join(parts)


# --------------------------------------------------------------------------------------------
# A site's study, command by command


def test_site_study_through_every_command_with_real_reconstruction(tmp_path, capsys):
    pytest.importorskip("radiomics", reason="study export extracts PyRadiomics features (no build for Python >= "
                                            "3.12; inside 3D Slicer it comes from the SlicerRadiomics extension)")
    case = simulate_case("H1", "hematoma", seed=1, out_dir=tmp_path / "raw", shape=(96, 96, 24))
    side = case.sides[0]
    labels = np.asarray(nib.load(case.labels_path).dataobj).astype(int)
    root = tmp_path / "study"

    ok(capsys, "study", "init", root, "--seed", "5")
    ok(capsys, "study", "add-case", root, case.anat_dir, "--case-id", "H1", "--lesion-type", "hematoma",
       "--diagnosis", "dissecting intramural hematoma", "--patient-name", PATIENT_NAME)
    refused(capsys, "study", "add-case", root, case.anat_dir, "--case-id", "H1", "--lesion-type", "hematoma",
            match="case H1 is already in the study")   # refused before reconstructing again
    for observer in ("O1", "O2"):
        ok(capsys, "study", "add-observer", root, observer)

    # Reading 1 of O1: the next case of O1's randomised order, as JSON.
    session = json.loads(ok(capsys, "study", "start-reading", root, "--observer", "O1", "--json"))
    assert session["qsm_path"] == str(root.resolve() / "cases" / "H1" / "qsm.nii.gz")
    assert session["segmentation_path"] == str(root.resolve() / "readings" / "H1" / "O1_r1.seg.nrrd")
    assert session["reading"] == 1 and re.fullmatch(r"[0-9a-f]{32}", session["session_uid"])
    assert not Path(session["segmentation_path"]).exists()
    draw_reading(session["segmentation_path"], session, labels, case.affine, side, "hematoma")
    ok(capsys, "study", "finish-reading", root, "--observer", "O1", "--case", "H1",
       "--segmentation", session["segmentation_path"])
    refused(capsys, "study", "finish-reading", root, "--observer", "O1", "--case", "H1",
            "--segmentation", session["segmentation_path"], match="reading 1 was already finished")

    # Reading 2 the same day: closed by the 60-day wash-out unless overridden with a reason.
    refused(capsys, "study", "start-reading", root, "--observer", "O1", match="60-day wash-out")
    refused(capsys, "study", "start-reading", root, "--observer", "O1", "--case", "H1", "--override-washout",
            match="needs an explicit case and a reason")
    out = ok(capsys, "study", "start-reading", root, "--observer", "O1", "--case", "H1", "--override-washout",
             "--reason", "observer leaves the department", "--json")
    second = json.loads(out)
    assert second["reading"] == 2 and "O1_r1" not in out          # blinded to reading 1
    draw_reading(second["segmentation_path"], second, labels, case.affine, side, "hematoma")
    ok(capsys, "study", "finish-reading", root, "--observer", "O1", "--case", "H1",
       "--segmentation", second["segmentation_path"])

    # O2 read on paper-era dates, before the study used the tool.
    for number, day in ((1, "2023-01-10"), (2, "2023-03-20")):
        old = {"observer": "O2", "reading": number, "case_id": "H1", "session_uid": f"historic{number}"}
        seg = draw_reading(tmp_path / f"old_O2_{number}.seg.nrrd", old, labels, case.affine, side, "hematoma")
        ok(capsys, "study", "import-reading", root, "--observer", "O2", "--case", "H1", "--reading", number,
           "--segmentation", seg, "--started", f"{day}T09:00:00Z", "--finished", f"{day}T09:25:00Z")

    status_text = ok(capsys, "study", "status", root)
    assert "1 cases (1 hematoma, 0 calcification); wash-out 60 days" in status_text
    status_json = ok(capsys, "study", "status", root, "--json")
    status = json.loads(status_json)
    assert status["washout_days"] == 60 and status["seed"] == 5
    assert {o: v["finished_by_reading"] for o, v in status["observers"].items()} == \
        {"O1": {"1": 1, "2": 1}, "O2": {"1": 1, "2": 1}}
    assert "consistent (4 finished readings)" in ok(capsys, "study", "verify", root)

    features_path = tmp_path / "features.csv"
    ok(capsys, "study", "export", root, "-o", features_path)
    features = pd.read_csv(features_path)
    assert list(features.columns[:7]) == CONTRACT_COLUMNS
    assert sorted(set(zip(features.observer, features.reading))) == [("O1", 1), ("O1", 2), ("O2", 1), ("O2", 2)]
    assert set(features.case_id) == {"H1"} and set(features.lesion_id) == {side}
    means = features[features.feature == "qsm_mean"].value
    # The phantom's lesion χ relative to CSF, recovered from raw GRE with the true segmentation.
    assert means.to_numpy() == pytest.approx(case.lesion_chi_ppm[side], rel=0.25)
    per_reading = features.groupby(["observer", "reading"]).feature.nunique()
    assert (per_reading == 109).all()          # 107 PyRadiomics features + qsm_mean + qsm_median

    # Privacy: neither status nor export carries the patient name or where the GRE came from.
    for text in (status_text, status_json, features_path.read_text()):
        assert "DOE" not in text and "JANE" not in text and str(case.anat_dir) not in text
    refused(capsys, "study", "export", root, "-o", tmp_path / "named.csv", "--with-identifiers",
            match="needs --reason")
    assert not (tmp_path / "named.csv").exists()

    # The study folder: the database and one file per case image and per observer x reading.
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["cases/H1/mask.nii.gz", "cases/H1/qsm.nii.gz", "readings/H1/O1_r1.seg.nrrd",
                     "readings/H1/O1_r2.seg.nrrd", "readings/H1/O2_r1.seg.nrrd", "readings/H1/O2_r2.seg.nrrd",
                     "study.sqlite"]
    db = sqlite3.connect(root / "study.sqlite")
    db.row_factory = sqlite3.Row
    columns = {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")}
               for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"case_id", "lesion_type", "diagnosis", "qsm_file", "mask_file", "gre_reference"} <= columns["cases"]
    assert {"observer_id"} <= columns["observers"]
    assert {"case_id", "observer_id", "reading", "started_at", "finished_at", "checksum", "segmentation_file",
            "session_uid", "washout_override", "imported"} <= columns["readings"]
    assert {"observer_id", "round", "position", "case_id"} <= columns["reading_order"]
    assert {"at", "action", "observer_id", "case_id", "reading", "reason", "details"} <= columns["audit_log"]
    row = db.execute("SELECT * FROM cases").fetchone()
    assert (row["lesion_type"], row["diagnosis"]) == ("hematoma", "dissecting intramural hematoma")
    assert row["gre_reference"] == "GRE input " + fingerprint_of(case.anat_dir)   # a reference, not a path
    assert row["patient_name"] == PATIENT_NAME                                    # given explicitly above
    times = {(r["observer_id"], r["reading"]): (r["started_at"], r["finished_at"], r["imported"])
             for r in db.execute("SELECT * FROM readings")}
    assert times[("O2", 1)] == ("2023-01-10T09:00:00Z", "2023-01-10T09:25:00Z", 1)
    assert times[("O1", 1)][2] == 0 and times[("O1", 1)][0] <= times[("O1", 1)][1]
    assert [tuple(r) for r in db.execute("SELECT observer_id, round, case_id FROM reading_order")] == \
        [("O1", 1, "H1")]
    audit = [dict(r) for r in db.execute("SELECT * FROM audit_log ORDER BY id")]
    db.close()
    added = next(e for e in audit if e["action"] == "case_added")
    recorded = json.loads(added["details"])["reconstruction"]
    assert recorded["method"] == "star" and recorded["background"].startswith("total-field fit")
    assert "BET" in recorded["mask"] and "f = 0.5" in recorded["mask"]
    override = next(e for e in audit if e["action"] == "washout_overridden")
    assert (override["observer_id"], override["reading"], override["reason"]) == \
        ("O1", 2, "observer leaves the department")
    assert sum(e["action"] == "reading_imported" for e in audit) == 2

    # The stored mask is the chosen brain mask, where χ is defined (the default background removal erodes nothing).
    qsm = nib.load(root / "cases" / "H1" / "qsm.nii.gz")
    mask = np.asarray(nib.load(root / "cases" / "H1" / "mask.nii.gz").dataobj) > 0
    support = np.asarray(qsm.dataobj) != 0
    assert mask[support].all() and support.sum() >= 0.99 * mask.sum()
    np.testing.assert_allclose(qsm.affine, case.affine, atol=1e-6)
    assert qsm.header["descrip"].item() == b""

    # Identifiers only when asked for, with a reason that is audited.
    ok(capsys, "study", "export", root, "-o", tmp_path / "named.csv", "--with-identifiers",
       "--reason", "linking to the clinical registry")
    named = pd.read_csv(tmp_path / "named.csv")
    assert set(named.patient_name) == {PATIENT_NAME}
    assert Study.open(root).audit_log()[-1]["reason"] == "linking to the clinical registry"


# --------------------------------------------------------------------------------------------
# DICOM input with patient identifiers


DICOM_IDENTIFIERS = {
    "0010|0010": PATIENT_NAME,                           # PatientName
    "0010|0020": "PID-778899",                           # PatientID
    "0010|0030": "19510203",                             # PatientBirthDate
    "0008|0050": "ACC-445566",                           # AccessionNumber
    "0008|0080": "ST ELSEWHERE HOSPITAL",                # InstitutionName
    "0020|000d": "1.2.826.0.1.3680043.2.1125.777.1",     # StudyInstanceUID
}


def test_add_case_from_dicom_records_no_patient_identifiers(tmp_path, capsys):
    case = simulate_case("C7", "calcification", seed=2, out_dir=tmp_path / "raw", shape=(64, 64, 16))
    dicom_dir = tmp_path / "DOE_JANE" / "dicom"
    write_dicom_gre(case.anat_dir, dicom_dir, DICOM_IDENTIFIERS)
    root = tmp_path / "study"
    ok(capsys, "study", "init", root)
    code, add_out, _ = run(capsys, "study", "add-case", root, dicom_dir, "--case-id", "C7",
                           "--lesion-type", "calcification", "--method", "tkd")
    assert code == 0
    status_out = ok(capsys, "study", "status", root, "--json") + ok(capsys, "study", "status", root)

    with Study.open(root) as study:
        record = study.case("C7")
        assert record.gre_reference == "GRE input " + fingerprint_of(dicom_dir)
        assert record.mask_path is not None and study.verify() == []
        np.testing.assert_allclose(nib.load(record.qsm_path).affine, case.affine, atol=1e-4)  # DICOM geometry kept
    stored = study_text(root)
    secrets = [*DICOM_IDENTIFIERS.values(), "DOE", "JANE", "19510203", str(dicom_dir), "DOE_JANE"]
    for secret in secrets:
        assert secret.encode() not in stored, secret
        assert secret not in add_out + status_out, secret


# --------------------------------------------------------------------------------------------
# The error path


def small_study(tmp_path) -> tuple[Path, dict]:
    """A study with one case on a small grid, one observer and one open reading; files for bad input."""
    affine = np.array([[-0.7, 0.0, 0.0, 30.0], [0.0, 0.7, 0.0, -20.0], [0.0, 0.0, 2.0, 5.0], [0, 0, 0, 1]])
    shape = (12, 10, 6)
    qsm = tmp_path / "qsm.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(3).normal(0, 0.05, shape).astype(np.float32), affine), qsm)
    root = tmp_path / "study"
    study = Study.create(root)
    study.add_observer("O1")
    study.add_case("c1", "hematoma", qsm)
    done = study.start_reading("O1", "c1", now="2024-01-08T09:00:00Z")
    lesion = np.zeros(shape, bool)
    lesion[3:6, 4:6, 2:4] = True
    csf = np.zeros(shape, bool)
    csf[8:10, 6:8, 3] = True

    def reading_file(name, session, *, lesion=lesion, file_affine=affine):
        tags = terminology.reading_tags(observer="O1", reading=session.reading, case_id="c1",
                                  session_uid=session.session_uid, status="started")
        path = tmp_path / name
        segio.write_seg_nrrd(path, {"lesion_right": lesion, "csf": csf}, file_affine,
                             [terminology.lesion_segment("right", "hematoma", tags), terminology.csf_segment(tags)])
        return path

    study.finish_reading(done.session_uid, reading_file("done.seg.nrrd", done), now="2024-01-08T09:30:00Z")
    study.add_case("c2", "hematoma", qsm)
    open_session = study.start_reading("O1", "c2", now="2024-01-09T09:00:00Z")
    shifted = affine.copy()
    shifted[:3, 3] += affine[:3, :3] @ [0.5, 0.0, 0.0]
    files = {
        "done": reading_file("again.seg.nrrd", done),
        "wrong grid": reading_file("shifted.seg.nrrd", open_session, file_affine=shifted),
        "empty lesion": reading_file("empty.seg.nrrd", open_session, lesion=np.zeros(shape, bool)),
    }
    study.close()
    return root, files


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_errors_are_one_line_exit_2_no_traceback_and_change_nothing(tmp_path):
    root, files = small_study(tmp_path)
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("x")
    commands = {
        "unknown observer": (["start-reading", root, "--observer", "O9"], "observer 'O9' is not registered"),
        "unknown case": (["start-reading", root, "--observer", "O1", "--case", "c9"], "case 'c9' is not in"),
        "finish, unknown observer": (["finish-reading", root, "--observer", "O9", "--case", "c2", "--segmentation",
                                      files["empty lesion"]], "observer 'O9' is not registered"),
        "finish twice": (["finish-reading", root, "--observer", "O1", "--case", "c1", "--segmentation", files["done"]],
                         "reading 1 was already finished on 2024-01-08T09:30:00Z"),
        "wrong grid": (["finish-reading", root, "--observer", "O1", "--case", "c2", "--segmentation",
                        files["wrong grid"]], "case c2, observer O1, reading 1: .* not on the QSM grid"),
        "empty lesion": (["finish-reading", root, "--observer", "O1", "--case", "c2", "--segmentation",
                          files["empty lesion"]], "segment 'lesion_right' in .* is empty"),
        "import, unknown case": (["import-reading", root, "--observer", "O1", "--case", "c9", "--reading", "1",
                                  "--segmentation", files["done"], "--started", "2023-01-01T08:00:00Z",
                                  "--finished", "2023-01-01T08:10:00Z"], "case 'c9' is not in"),
        "not a study": (["status", tmp_path], "is not a study folder"),
        "file system": (["init", not_a_folder / "study"], "a-file"),
    }
    before = snapshot(root)
    # All commands run in one separate interpreter, each through the CLI's main() with its own
    # stdout/stderr (cli_driver), so that an exception escaping main() would show as a traceback; one
    # command also runs as `python -m QSMReproducibilityLib.cli` to check the exit code the shell sees.
    shell = qsmrepro("study", *commands["finish twice"][0])
    results = {label: result[:3] for label, result in
               run_commands({label: ["study", *argv] for label, (argv, _) in commands.items()}, timeout=120).items()}
    results["finish twice, from the shell"] = [shell.returncode, shell.stdout, shell.stderr]
    commands["finish twice, from the shell"] = commands["finish twice"]
    for label, (code, stdout, stderr) in results.items():
        assert code == 2, (label, stdout, stderr)
        assert "Traceback" not in stderr and stdout == "", (label, stdout, stderr)
        lines = stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("qsmrepro: error: "), (label, stderr)
        assert re.search(commands[label][1], lines[0]), (label, lines[0])
    assert snapshot(root) == before                     # database and files byte for byte



def test_cli_flattens_multiline_errors_and_reports_database_errors(tmp_path, capsys, monkeypatch):
    root, _ = small_study(tmp_path)
    from QSMReproducibilityLib.errors import ReadingError

    def broken(self, **kwargs):
        raise ReadingError("first line\n  second line")

    monkeypatch.setattr(Study, "summary", broken)
    assert refused(capsys, "study", "status", root, match="first line second line")

    def locked(self, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(Study, "summary", locked)
    refused(capsys, "study", "status", root, match=r"study database .*study\.sqlite: database is locked")
