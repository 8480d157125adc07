"""Bad input as users bring it, across every command: each case exits 2 with exactly one line on stderr,
``qsmrepro: error: …``, naming the file (or option) and the problem, no traceback, and writes nothing.

All cases run through ``QSMReproducibilityLib.cli.main`` in one separate interpreter (so that an exception
escaping ``main`` would show as a traceback, and logging goes to the command's stderr); the whole working
folder is listed with every file's SHA-256 before and after each case (``cli_driver``).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from QSMReproducibilityLib import segio, terminology
from QSMReproducibilityLib.phantom import CSF, LESION_LABEL, simulate_case
from QSMReproducibilityLib.readings import Study

from cli_driver import run_commands
from gre_dicom import write_dicom_gre

SHAPE = (40, 40, 10)


# ---------------------------------------------------------------------------------------------------
# The shared inputs: a phantom case in every form, a study, a feature table


class World:
    def __init__(self, root: Path):
        self.root = root
        self.case = simulate_case("B1", "hematoma", seed=2, out_dir=root / "phantom", shape=SHAPE)
        self.anat = self.case.anat_dir
        self.te = [str(t) for t in self.case.te_s]
        self.affine = self.case.affine
        mags = sorted(self.anat.glob("*_part-mag_MEGRE.nii"))
        self.mag_files = mags
        self.mag = np.stack([np.asarray(nib.load(f).dataobj) for f in mags], -1).astype(np.float32)
        self.pha = np.stack([np.asarray(nib.load(str(f).replace("part-mag", "part-phase")).dataobj) for f in mags],
                            -1).astype(np.float32)
        self.mag4d = self.save("mag_4d.nii.gz", self.mag)
        self.pha4d = self.save("pha_4d.nii.gz", self.pha)
        truth = np.asarray(nib.load(self.case.labels_path).dataobj).astype(int)
        self.brain = (truth > 0) & (truth != 7)
        labels = np.zeros(SHAPE, np.uint8)
        labels[truth == LESION_LABEL[self.case.sides[0]]] = {"right": 1, "left": 2}[self.case.sides[0]]
        labels[truth == CSF] = 3
        self.labels = labels
        self.label_map = self.save("labels.nii.gz", labels)
        self.qsm = self.case.chi_path
        # A study with one case, one observer and an open reading; each study case works on a copy.
        self.study = root / "study"
        with Study.create(self.study) as study:
            study.add_observer("O1")
            study.add_case("c1", "hematoma", self.qsm)
            study.start_reading("O1", "c1")
        self.features = root / "features.csv"
        self.features.write_text("case_id,lesion_id,lesion_type,observer,reading,feature,value\n"
                                 "c1,right,hematoma,O1,1,qsm_mean,0.2\nc1,right,hematoma,O1,2,qsm_mean,0.21\n")

    def save(self, name, data, affine=None, folder=None) -> Path:
        path = (folder or self.root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.asarray(data), self.affine if affine is None else affine), path)
        return path

    def anat_copy(self, folder: Path) -> Path:
        return Path(shutil.copytree(self.anat, folder / "anat"))

    def study_copy(self, folder: Path) -> Path:
        return Path(shutil.copytree(self.study, folder / "study"))

    def dicom(self, folder: Path) -> Path:
        write_dicom_gre(self.anat, folder / "dicom", {})
        return folder / "dicom"

    def nifti(self, folder, *, mag=None, pha=None, te=None, b0=("--b0", "3"), out="qsm.nii.gz"):
        """reconstruct --magnitude M --phase P --te … -o OUT with the given arrays (default: the good ones)."""
        m = self.save("mag.nii.gz", mag, folder=folder) if mag is not None else self.mag4d
        p = self.save("pha.nii.gz", pha, folder=folder) if pha is not None else self.pha4d
        return ["reconstruct", "--magnitude", m, "--phase", p, "--te", *(te or self.te), *b0, "-o", folder / out]


def shifted(affine, voxels):
    out = affine.copy()
    out[:3, 3] += affine[:3, :3] @ np.asarray(voxels, float)
    return out


def set_sidecars(anat: Path, **entries) -> None:
    for side in anat.glob("*.json"):
        data = json.loads(side.read_text())
        data.update(entries)
        data = {k: v for k, v in data.items() if v is not None}
        side.write_text(json.dumps(data))


def edit_dicom(folder: Path, tag: str, value: str) -> None:
    import SimpleITK as sitk

    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for path in sorted(folder.glob("*.dcm")):
        image = sitk.ReadImage(str(path))
        image.SetMetaData(tag, value)
        writer.SetFileName(str(path))
        writer.Execute(image)


def untagged_seg(world: World, path: Path, affine=None) -> Path:
    lesion = np.isin(world.labels, (1, 2))
    segio.write_seg_nrrd(path, {"lesion_right": lesion, "csf": world.labels == 3},
                         world.affine if affine is None else affine,
                         [segio.SegmentSpec("lesion_right", "lesion right", (1, 0, 0), {}),
                          segio.SegmentSpec("csf", "CSF", (0, 0, 1), {})])
    return path


# ---------------------------------------------------------------------------------------------------
# The cases: (label, builder(world, folder) -> argv, pattern of the message, text the message must name)


def _c(label, build, pattern, names):
    return pytest.param(label, build, pattern, names, id=label)


def _zero_phase(w, d):
    return w.nifti(d, pha=np.zeros_like(w.pha))


def _nan_magnitude(w, d):
    mag = w.mag.copy()
    mag[3, 4, 5, 2] = np.nan
    return w.nifti(d, mag=mag)


def _two_d(w, d):
    return w.nifti(d, mag=w.mag[:, :, 0, 0])


def _truncated(w, d):
    path = w.save("mag.nii", w.mag, folder=d)
    path.write_bytes(path.read_bytes()[:20000])
    return ["reconstruct", "--magnitude", path, "--phase", w.pha4d, "--te", *w.te, "--b0", "3", "-o", d / "q.nii.gz"]


def _text_as_nifti(w, d):
    path = d / "mag.nii.gz"
    path.write_text("magnitude exported as text\n")
    return ["reconstruct", "--magnitude", path, "--phase", w.pha4d, "--te", *w.te, "--b0", "3", "-o", d / "q.nii.gz"]


def _bids(edit):
    def build(w, d):
        anat = w.anat_copy(d)
        edit(anat)
        return ["reconstruct", anat, "-o", d / "qsm.nii.gz"]
    return build


def _drop_echo(anat):
    for f in anat.glob("*_echo-3_*"):
        f.unlink()


def _drop_phase(anat):
    for f in anat.glob("*_echo-2_part-phase_*"):
        f.unlink()


def _mask(make):
    def build(w, d):
        mask = make(w, d)
        return ["reconstruct", w.anat, "-o", d / "qsm.nii.gz", "--mask", mask]
    return build


def _dicom_without_phase(w, d):
    dicom = w.dicom(d)
    for path in dicom.glob("*.dcm"):
        if int(path.name.split("_")[2]) % 2 == 0:  # series 2, 4, … are the phase (write_dicom_gre: mag then phase)
            path.unlink()
    return ["reconstruct", dicom, "-o", d / "qsm.nii.gz"]


def _dicom_b0(w, d):
    dicom = w.dicom(d)
    edit_dicom(dicom, "0018|0087", "30")
    return ["reconstruct", dicom, "-o", d / "qsm.nii.gz"]


def _per_echo_grids(w, d):
    files = [w.save(f"mag_e{e}.nii.gz", w.mag[..., e] if e != 4 else w.mag[:-2, ..., e], folder=d) for e in range(7)]
    return ["reconstruct", "--magnitude", *files, "--phase", w.pha4d, "--te", *w.te, "--b0", "3", "-o", d / "q.nii.gz"]


def _extract(make_qsm=None, make_seg=None, extra=(), out="features.csv"):
    def build(w, d):
        qsm = make_qsm(w, d) if make_qsm else w.qsm
        seg = make_seg(w, d) if make_seg else w.label_map
        return ["extract", qsm, seg, *extra, "-o", d / out]
    return build


def _agreement(content: bytes | str | None):
    def build(w, d):
        path = d / "features.csv"
        if content is not None:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return ["agreement", path, "-o", d / "report"]
    return build


def _study(make):
    def build(w, d):
        return make(w, d, w.study_copy(d))
    return build


def _finish(make_seg, *extra):
    return _study(lambda w, d, st: ["study", "finish-reading", st, "--observer", "O1", "--case", "c1",
                                    "--segmentation", make_seg(w, d), *extra])


def _foreign(w, d):
    tags = terminology.reading_tags(observer="O1", reading=1, case_id="c1", session_uid="another-session",
                                    status="started")
    path = d / "foreign.seg.nrrd"
    lesion = np.isin(w.labels, (1, 2))
    segio.write_seg_nrrd(path, {"lesion_right": lesion, "csf": w.labels == 3}, w.affine,
                         [terminology.lesion_segment("right", "hematoma", tags), terminology.csf_segment(tags)])
    return path


HEADER = "case_id,lesion_id,lesion_type,observer,reading,feature,value\n"

CASES = [
    # reconstruct: echoes and echo times
    _c("phase has fewer echoes", lambda w, d: w.nifti(d, pha=w.pha[..., :6]), r"phase has 6 echoes but magnitude has 7",
       "pha.nii.gz"),
    _c("echo times fewer than echoes", lambda w, d: w.nifti(d, te=w.te[:3]), r"3 echo times given for 7 echoes",
       "mag_4d.nii.gz"),
    _c("echo times in milliseconds", lambda w, d: w.nifti(d, te=["4.92", "7.38", "9.84", "12.3", "14.76", "17.22",
                                                                "19.68"]),
       r"echo times \[4\.92, .*\] are not in seconds", "mag_4d.nii.gz"),
    _c("echo times decreasing", lambda w, d: w.nifti(d, te=w.te[::-1]), r"echo times must increase", "mag_4d.nii.gz"),
    _c("sidecar echo time in milliseconds", _bids(lambda a: set_sidecars(a, EchoTime=4.92)),
       r"EchoTime 4\.92 is not in seconds .*give --te", "_echo-1_part-mag_MEGRE.json"),
    _c("sidecar without echo time", _bids(lambda a: set_sidecars(a, EchoTime=None)), r"EchoTime missing .*give --te",
       "anat"),
    # reconstruct: image content and files
    _c("NaN in the magnitude", _nan_magnitude, r"the magnitude contains NaN", "mag.nii.gz"),
    _c("magnitude zero everywhere", lambda w, d: w.nifti(d, mag=np.zeros_like(w.mag)), r"magnitude is zero everywhere",
       "mag.nii.gz"),
    _c("phase zero everywhere", _zero_phase, r"the phase is 0 everywhere, which is not a phase image", "pha.nii.gz"),
    _c("2-D magnitude", _two_d, r"expected a 3-D or 4-D volume, got 2 dimensions", "mag.nii.gz"),
    _c("truncated NIfTI", _truncated, r"(cannot be read|not a readable NIfTI)", "mag.nii"),
    _c("text file named .nii.gz", _text_as_nifti, r"not a readable NIfTI file", "mag.nii.gz"),
    _c("missing magnitude file", lambda w, d: ["reconstruct", "--magnitude", d / "nope.nii.gz", "--phase", w.pha4d,
                                               "--te", *w.te, "--b0", "3", "-o", d / "q.nii.gz"], r"file not found",
       "nope.nii.gz"),
    _c("magnitude echoes on different grids", _per_echo_grids, r"its grid differs from", "mag_e4.nii.gz"),
    _c("phase shifted in its header",
       lambda w, d: ["reconstruct", "--magnitude", w.mag4d, "--phase",
                     w.save("pha.nii.gz", w.pha, shifted(w.affine, [2, 0, 0]), d), "--te", *w.te, "--b0", "3", "-o",
                     d / "q.nii.gz"],
       r"different orientation or position", "pha.nii.gz"),
    _c("phase on a smaller grid", lambda w, d: w.nifti(d, pha=w.pha[:, :-3]),
       r"magnitude grid .* differs from phase grid", "pha.nii.gz"),
    _c("BIDS echo missing", _bids(_drop_echo), r"echo 3 of the MEGRE series is missing \(found echoes 1, 2, 4", "anat"),
    _c("BIDS phase file missing", _bids(_drop_phase), r"phase file .*_echo-2_part-phase_MEGRE.nii for .* is missing",
       "anat"),
    _c("empty input folder", lambda w, d: ["reconstruct", (d / "empty").mkdir() or d / "empty", "-o", d / "q.nii.gz"],
       r"no DICOM images with an EchoTime were found", "empty"),
    _c("no input at all", lambda w, d: ["reconstruct", "-o", d / "q.nii.gz"], r"give an input folder", "--magnitude"),
    _c("NIfTI input without echo times",
       lambda w, d: ["reconstruct", "--magnitude", w.mag4d, "--phase", w.pha4d, "-o", d / "q.nii.gz"],
       r"echo times are required", "--te"),
    # reconstruct: field strength and direction
    _c("negative field strength", lambda w, d: ["reconstruct", w.anat, "--b0", "-3", "-o", d / "q.nii.gz"],
       r"--b0 -3 T is outside 0\.1–21 T", "--b0"),
    _c("field strength of 50 T", lambda w, d: w.nifti(d, b0=("--b0", "50")), r"--b0 50 T is outside", "--b0"),
    _c("sidecar field strength in mT", _bids(lambda a: set_sidecars(a, MagneticFieldStrength=3000)),
       r"MagneticFieldStrength 3000 T is outside 0\.1–21 T", "_part-mag_MEGRE.json: MagneticFieldStrength"),
    _c("sidecar field strength not a number", _bids(lambda a: set_sidecars(a, MagneticFieldStrength="3T")),
       r"MagneticFieldStrength '3T' is not a field strength in tesla", "MEGRE.json"),
    _c("DICOM field strength 30 T", _dicom_b0, r"MagneticFieldStrength \(0018,0087\) 30 T is outside",
       "dicom"),
    _c("B0 direction of zeros", lambda w, d: ["reconstruct", w.anat, "--b0-dir", "0", "0", "0", "-o", d / "q.nii.gz"],
       r"the B0 direction must be three finite numbers, not all zero", "--b0-dir"),
    _c("sidecar B0 direction not a vector", _bids(lambda a: set_sidecars(a, B0_dir=[0, 1])),
       r"B0_dir in the sidecar of .* is not a 3-vector", "anat"),
    # reconstruct: masks, phase units, outputs, DICOM
    _c("mask on another grid", _mask(lambda w, d: w.save("mask.nii.gz", w.brain[:-4].astype(np.uint8), folder=d)),
       r"the mask is not on the GRE grid \(grid \(36, 40, 10\), the GRE's \(40, 40, 10\)\)", "mask.nii.gz"),
    _c("mask shifted in its header",
       _mask(lambda w, d: w.save("mask.nii.gz", w.brain.astype(np.uint8), shifted(w.affine, [0, 1, 0]), d)),
       r"the mask is not on the GRE grid \(same size, but another position", "mask.nii.gz"),
    _c("empty mask", _mask(lambda w, d: w.save("mask.nii.gz", np.zeros(SHAPE, np.uint8), folder=d)),
       r"the mask is empty", "mask.nii.gz"),
    _c("Siemens units asked for, values beyond them",
       lambda w, d: w.nifti(d, pha=w.pha * 4000.0) + ["--phase-units", "siemens"],
       r"phase values .* lie outside the Siemens range", "pha.nii.gz"),
    _c("unknown phase units", lambda w, d: ["reconstruct", w.anat, "--phase-units", "degrees", "-o", d / "q.nii.gz"],
       r"reconstruct: argument --phase-units: invalid choice: 'degrees'", "--phase-units"),
    _c("output is a folder", lambda w, d: ["reconstruct", w.anat, "-o", (d / "out").mkdir() or d / "out"],
       r"the QSM output \(-o\) is an existing folder", "out"),
    _c("output not NIfTI", lambda w, d: ["reconstruct", w.anat, "-o", d / "qsm.nrrd"],
       r"must end in \.nii or \.nii\.gz", "qsm.nrrd"),
    _c("output under a file", lambda w, d: ["reconstruct", w.anat, "-o", w.features / "qsm.nii.gz"],
       r"cannot be written, .* is a file, not a folder", "features.csv"),
    _c("DICOM without phase series", _dicom_without_phase, r"no phase series found", "dicom"),
    # extract
    _c("extract: QSM missing", _extract(make_qsm=lambda w, d: d / "nope.nii.gz"), r"file not found", "nope.nii.gz"),
    _c("extract: 4-D QSM", _extract(make_qsm=lambda w, d: w.save("qsm4d.nii.gz", w.mag, folder=d)),
       r"expected a 3-D volume", "qsm4d.nii.gz"),
    _c("extract: segmentation on another grid",
       _extract(make_seg=lambda w, d: w.save("seg.nii.gz", w.labels, shifted(w.affine, [0.5, 0, 0]), d)),
       r"segmentation grid .* differs from the QSM grid .*--resample", "seg.nii.gz"),
    _c("extract: empty label map", _extract(make_seg=lambda w, d: w.save("seg.nii.gz", np.zeros(SHAPE, np.uint8),
                                                                         folder=d)),
       r"no lesion ROI found", "seg.nii.gz"),
    _c("extract: unreadable .seg.nrrd",
       _extract(make_seg=lambda w, d: (d / "x.seg.nrrd").write_text("not nrrd") and d / "x.seg.nrrd"),
       r"not a readable NRRD", "x.seg.nrrd"),
    _c("extract: malformed parameter file",
       lambda w, d: ["extract", w.qsm, w.label_map, "--params",
                     (d / "p.yaml").write_text("setting: [unclosed\n") and d / "p.yaml", "-o", d / "f.csv"],
       r"not a valid PyRadiomics parameter file", "p.yaml"),
    _c("extract: output is a folder", lambda w, d: ["extract", w.qsm, w.label_map, "-o", (d / "o").mkdir() or d / "o"],
       r"feature table \(-o\) is an existing folder", "o"),
    # agreement
    _c("agreement: table missing", _agreement(None), r"feature table .* does not exist", "features.csv"),
    _c("agreement: empty file", _agreement(""), r"feature table .* is empty", "features.csv"),
    _c("agreement: columns missing", _agreement("case,value\nc1,0.2\n"), r"column", "features.csv"),
    _c("agreement: values not numbers", _agreement(HEADER + "c1,right,hematoma,O1,1,qsm_mean,high\n"), r"value",
       "features.csv"),
    _c("agreement: too few lesions",
       _agreement(HEADER + "".join(f"c1,right,hematoma,{o},{r},qsm_mean,0.2\n" for o in ("O1", "O2") for r in (1, 2))),
       r"too few lesions to measure agreement", "features.csv"),
    _c("agreement: binary file", _agreement(bytes(range(256)) * 8), r"features\.csv", "features.csv"),
    # study
    _c("study: folder is not a study", lambda w, d: ["study", "status", d], r"is not a study folder",
       "study_folder_is_not_a_study"),
    _c("study: init over a study", _study(lambda w, d, st: ["study", "init", st]), r"already holds a study", "study"),
    _c("study: add-case 2-D QSM",
       _study(lambda w, d, st: ["study", "add-case", st, "--case-id", "c2", "--lesion-type", "hematoma", "--qsm",
                                w.save("q2d.nii.gz", np.zeros((8, 8), np.float32), folder=d)]),
       r"a 3-D volume is required", "q2d.nii.gz"),
    _c("study: add-case mask on another grid",
       _study(lambda w, d, st: ["study", "add-case", st, "--case-id", "c2", "--lesion-type", "hematoma", "--qsm", w.qsm,
                                "--mask", w.save("m.nii.gz", w.brain[:-1].astype(np.uint8), folder=d)]),
       r"is not on the grid of the QSM map", "m.nii.gz"),
    _c("study: add-case INPUT and --qsm",
       _study(lambda w, d, st: ["study", "add-case", st, "--case-id", "c2", "--lesion-type", "hematoma", w.anat,
                                "--qsm", w.qsm]),
       r"give either INPUT .* or --qsm QSM.nii.gz, not both", "--qsm"),
    _c("study: add-case GRE with phase zero everywhere",
       _study(lambda w, d, st: ["study", "add-case", st, "--case-id", "c2", "--lesion-type", "hematoma",
                                _bids_zero_phase(w, d), "--b0", "3", "--te", *w.te]),
       r"the phase is 0 everywhere", "_part-phase_MEGRE.nii"),
    _c("study: observer ID with a name",
       _study(lambda w, d, st: ["study", "add-observer", st, "Dr. Smith"]), r"observer ID 'Dr. Smith' is not valid",
       "Dr. Smith"),
    _c("study: label map on another grid",
       _finish(lambda w, d: w.save("seg.nii.gz", w.labels, shifted(w.affine, [0.5, 0, 0]), d)),
       r"not on the QSM grid of the case.*--resample", "seg.nii.gz"),
    _c("study: label map with an unnamed label",
       _finish(lambda w, d: w.save("seg.nii.gz", np.where(w.labels == 3, 4, w.labels).astype(np.uint8), folder=d)),
       r"label\(s\) 4 are not in the label convention", "seg.nii.gz"),
    _c("study: label map with no lesion",
       _finish(lambda w, d: w.save("seg.nii.gz", np.where(w.labels == 3, 3, 0).astype(np.uint8), folder=d)),
       r"has no lesion segment", "seg.nii.gz"),
    _c("study: segmentation of another session", _finish(_foreign), r"SessionUID='another-session'",
       "foreign.seg.nrrd"),
    _c("study: malformed --labels", _finish(lambda w, d: w.label_map, "--labels", "lesion_right:1,csf:3"),
       r"--labels 'lesion_right:1,csf:3': 'lesion_right:1' is not NAME=VALUE", "--labels"),
    _c("study: untagged .seg.nrrd shifted",
       _finish(lambda w, d: untagged_seg(w, d / "s.seg.nrrd", shifted(w.affine, [0.5, 0, 0]))),
       r"not on the QSM grid", "s.seg.nrrd"),
    _c("study: import with a malformed date",
       _study(lambda w, d, st: ["study", "import-reading", st, "--observer", "O1", "--case", "c1", "--reading", "2",
                                "--segmentation", w.label_map, "--started", "yesterday", "--finished",
                                "2024-01-01T10:00:00Z"]),
       r"start time \(--started\) 'yesterday' is not an ISO-8601 date/time", "--started"),
    _c("study: export without readings",
       _study(lambda w, d, st: ["study", "export", st, "-o", d / "f.csv"]), r"has no finished readings to export",
       "study"),
    # demo
    _c("demo: too few cases", lambda w, d: ["demo", "-o", d / "demo", "--cases", "2"], r"needs at least 5 cases",
       "got 2"),
    _c("demo: output is a file", lambda w, d: ["demo", "-o", w.features, "--cases", "5"],
       r"the demo's output \(-o\) is an existing file", "features.csv"),
    _c("demo: no worker processes", lambda w, d: ["demo", "-o", d / "demo", "--workers", "0"],
       r"--workers 0: give at least 1 process", "--workers"),
    _c("demo: cases not a number", lambda w, d: ["demo", "-o", d / "demo", "--cases", "many"],
       r"demo: argument --cases: invalid int value: 'many'", "--cases"),
]


def _bids_zero_phase(w, d):
    anat = w.anat_copy(d)
    for path in anat.glob("*_part-phase_MEGRE.nii"):
        nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), w.affine), path)
    return anat


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    world = World(root / "shared")
    argvs = {}
    for param in CASES:
        label, build, _, _ = param.values
        folder = root / "cases" / label.replace(" ", "_").replace(":", "").replace("/", "_")
        folder.mkdir(parents=True)
        argvs[label] = [str(a) for a in build(world, folder)]
    return {label: (argvs[label], *result) for label, result in run_commands(argvs, root=root).items()}


def test_there_are_at_least_30_cases_over_every_command():
    commands = {param.values[0].split(":")[0] if ":" in param.values[0] else "reconstruct" for param in CASES}
    assert len(CASES) >= 30 and commands == {"reconstruct", "extract", "agreement", "study", "demo"}


# Cases that reach PyRadiomics' parameter file before their own problem (PyRadiomics has no build for
# Python >= 3.12; inside 3D Slicer it comes from the SlicerRadiomics extension).
NEEDS_RADIOMICS = {"extract: segmentation on another grid", "extract: empty label map",
                   "extract: unreadable .seg.nrrd", "extract: malformed parameter file"}


@pytest.mark.parametrize("label, build, pattern, names", CASES)
def test_bad_input_is_one_line_exit_2_naming_the_file_and_writes_nothing(results, label, build, pattern, names):
    if label in NEEDS_RADIOMICS and importlib.util.find_spec("radiomics") is None:
        pytest.skip("PyRadiomics is not installed")
    argv, code, stdout, stderr, changed = results[label]
    command = "qsmrepro " + " ".join(argv)
    assert "Traceback" not in stderr, (command, stderr)
    assert code == 2, (command, code, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("qsmrepro: error: "), (command, stderr)
    assert re.search(pattern, lines[0]), (command, lines[0])
    assert names in lines[0], (command, lines[0])
    assert changed == [], (command, changed)
