"""The embedded synthetic study: ``qsmrepro demo`` and ``make demo``.

By default 61 cases in the study's proportions (36 intramural haematomas, 25 calcifications), each
simulated as BIDS MEGRE (:mod:`.phantom`), reconstructed (:mod:`.recon.pipeline`), read twice by two
simulated observers (:mod:`.observers`) whose readings enter a real study store (:mod:`.readings`)
through the import path a site uses for readings made before it adopted the tool; then radiomics,
agreement statistics and the report. Deterministic for a given seed.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .progress import ProgressCallback, notify, sub_progress
from .recon.pipeline import STUDY_CHAIN

STUDY_HEMATOMA_FRACTION = 36 / 61
MIN_CASES = 5
FIRST_READING_DATE = dt.datetime(2024, 1, 8, 9, 0, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class CaseTask:
    case_id: str
    lesion_type: str
    seed: int
    case_dir: str
    method: str
    full_fov: bool = False
    background: str = STUDY_CHAIN["background"]


def cohort(n_cases: int, seed: int, work_dir: Path, method: str = STUDY_CHAIN["method"], full_fov: bool = False,
           background: str = STUDY_CHAIN["background"]) -> list[CaseTask]:
    """Case list in the study's proportions, with one independent seed per case."""
    if n_cases < MIN_CASES:
        raise InputError(f"the demo needs at least {MIN_CASES} cases (agreement statistics need 3 lesions of a "
                         f"type), got {n_cases}")
    n_hem = min(n_cases - 1, max(1, round(n_cases * STUDY_HEMATOMA_FRACTION)))
    seeds = np.random.SeedSequence(seed).generate_state(n_cases)
    tasks = []
    for i in range(n_cases):
        lesion_type = "hematoma" if i < n_hem else "calcification"
        number = i + 1 if i < n_hem else i - n_hem + 1
        case_id = f"{'H' if lesion_type == 'hematoma' else 'C'}{number:03d}"
        tasks.append(CaseTask(case_id, lesion_type, int(seeds[i]), str(work_dir / case_id), method, full_fov,
                              background))
    return tasks


def simulate_and_read(task: CaseTask) -> dict:
    """Simulate, reconstruct and read one case; returns what the study store needs (picklable)."""
    from .phantom import simulate_case
    from .recon.pipeline import reconstruct_path

    case_dir = Path(task.case_dir)
    case = simulate_case(task.case_id, task.lesion_type, seed=task.seed, out_dir=case_dir / "gre",
                         full_fov=task.full_fov)
    qsm_path = case_dir / "qsm.nii.gz"
    mask_path = case_dir / "mask.nii.gz"
    reconstruct_path(case.anat_dir, qsm_path, mask_out=mask_path, method=task.method, background_method=task.background)
    readings = read_case(task, case.sides, case.labels_path, qsm_path)
    return dict(case_id=task.case_id, lesion_type=task.lesion_type, qsm=str(qsm_path), mask=str(mask_path),
                gre=str(case.anat_dir), readings=readings, sides=case.sides, truth=case.lesion_chi_ppm)


def read_case(task: CaseTask, sides, labels_path, qsm_path) -> list[dict]:
    """The simulated observers read one reconstructed case: one ``.seg.nrrd`` per observer x reading.

    The observers draw on the reconstructed QSM (``qsm_path``); the truth labels (``labels_path``) only
    tell them where the lesion is and where the ventricles are (:func:`.observers.simulate_reading`).
    Returns the readings' paths and historical dates, in reading order.
    """
    from .io import load_volume
    from .observers import DEFAULT_OBSERVERS, simulate_reading
    from .segio import write_seg_nrrd
    from .terminology import csf_segment, lesion_segment, reading_tags

    case_dir = Path(task.case_dir)
    labels, affine = load_volume(labels_path)
    labels = labels.astype(np.int16)
    qsm, _ = load_volume(qsm_path)
    vox = np.sqrt((affine[:3, :3] ** 2).sum(0))
    rng = np.random.default_rng(task.seed + 1)
    readings = []
    for profile in DEFAULT_OBSERVERS:
        first = FIRST_READING_DATE + dt.timedelta(days=int(rng.integers(0, 120)), minutes=int(rng.integers(0, 480)))
        for number in (1, 2):
            started = first if number == 1 else first + dt.timedelta(days=int(rng.integers(62, 120)))
            finished = started + dt.timedelta(minutes=int(rng.integers(4, 25)))
            masks = simulate_reading(qsm, labels, task.lesion_type, sides, profile, vox, rng, reading=number)
            tags = reading_tags(observer=profile.observer_id, reading=number, case_id=task.case_id,
                                session_uid=str(uuid.UUID(int=int(rng.integers(0, 2**63)))), status="finished")
            specs = [lesion_segment(side, task.lesion_type, tags) for side in sides] + [csf_segment(tags)]
            seg_path = case_dir / "readings" / f"{profile.observer_id}_r{number}.seg.nrrd"
            write_seg_nrrd(seg_path, masks, affine, specs)
            readings.append(dict(observer=profile.observer_id, reading=number, path=str(seg_path),
                                 started=started.isoformat(), finished=finished.isoformat()))
    return readings


def run_demo(out_dir, *, n_cases: int = 61, seed: int = 0, method: str = STUDY_CHAIN["method"],
             background: str = STUDY_CHAIN["background"],
             workers: int | None = None, full_fov: bool = False,
             progress: ProgressCallback | None = None) -> dict[str, Path]:
    """Run the whole synthetic study into ``out_dir``; returns the paths of the outputs.

    The demo reproduces the study, so it reconstructs with the study's chain (V-SHARP, then ``method``)
    unless ``background`` names another; its phantom's lesions lie away from the skull base, where that
    chain is sound (:mod:`.head_phantom` and ``Testing/Python/test_skull_base.py`` cover the skull base).
    """
    from .feature_table import write_feature_table
    from .radiomics import extract_readings
    from .readings import Study
    from .report import write_report

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: the demo's output (-o) is an existing file; give a folder")
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers}: give at least 1 process")
    work = out_dir / "phantom"
    tasks = cohort(n_cases, seed, work, method, full_fov, background)
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = workers or min(len(tasks), os.cpu_count() or 1)
    study_dir = out_dir / "study"
    if study_dir.exists():
        import shutil

        shutil.rmtree(study_dir)
    study = Study.create(study_dir, seed=seed)
    observers_added = set()
    stage = sub_progress(progress, 0.0, 0.75)
    notify(stage, 0.0, f"simulating and reconstructing {len(tasks)} cases")
    with ProcessPoolExecutor(workers) as pool:
        for i, case in enumerate(pool.map(simulate_and_read, tasks)):
            study.add_case(case["case_id"], case["lesion_type"], case["qsm"], mask_path=case["mask"],
                           gre_reference=case["gre"])
            for r in case["readings"]:
                if r["observer"] not in observers_added:
                    study.add_observer(r["observer"])
                    observers_added.add(r["observer"])
                study.import_reading(case["case_id"], r["observer"], r["reading"], r["path"],
                                     started_at=r["started"], finished_at=r["finished"])
            notify(stage, (i + 1) / len(tasks), f"case {case['case_id']} reconstructed and read")
    features = extract_readings(study.readings(), progress=sub_progress(progress, 0.75, 0.92), workers=workers)
    features_path = write_feature_table(features, out_dir / "features.csv")
    notify(progress, 0.92, "agreement statistics and report")
    from .recon.pipeline import methods_settings, reconstruction_record

    settings = {"cohort": f"synthetic, {n_cases} cases, seed {seed}, "
                          f"{'full field of view' if full_fov else 'slab around V4'}",
                **methods_settings(reconstruction_record(Path(t.case_dir) / "qsm.nii.gz") for t in tasks),
                "readings": "2 simulated observers x 2 readings, imported with historical dates"}
    outputs = write_report(features, out_dir, settings=settings, progress=sub_progress(progress, 0.92, 1.0))
    outputs = {**outputs, "features": features_path, "study": study_dir}
    notify(progress, 1.0, "demo done")
    return outputs
