"""``qsmrepro study ...``: manage a study store from the command line."""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

from ..errors import InputError, QSMReproError, ReadingError, one_line
from ..io import PHASE_UNITS
from ..io.label_maps import label_convention
from ..progress import ConsoleProgress
from ..readings.store import DB_NAME, Study
from ..recon.pipeline import ReconParams
from ..terminology import LESION_TYPES
from .arguments import add_phase_units_argument


def add_command(subparsers) -> None:
    """Register the ``study`` sub-command tree on an argparse sub-parsers object."""

    study = subparsers.add_parser(
        "study",
        help="blinded repeat readings: cases, observers, sessions, wash-out, export",
        description="Manage a study folder (study.sqlite + cases/ + readings/).",
    )
    sub = study.add_subparsers(dest="study_command", metavar="COMMAND")
    study.set_defaults(handler=lambda args: _help(study))

    p = _command(sub, "init", _cmd_init, "create a new study folder", dir_help="study folder (created)")
    p.add_argument("--washout-days", type=int, default=60, help="days between readings N and N+1 (default 60)")
    p.add_argument("--seed", type=int, default=0, help="seed of the randomised reading orders (default 0)")
    p.add_argument("--readings", type=int, default=2, dest="readings_per_observer",
                   help="readings of each case by each observer (default 2)")

    p = _command(sub, "add-observer", _cmd_add_observer, "register an observer")
    p.add_argument("observer", metavar="O", help="observer ID (e.g. O1; no names needed)")

    p = _command(sub, "add-case", _cmd_add_case, "add a case from a QSM map, or reconstruct it from GRE data",
                 usage="%(prog)s [-h] DIR --case-id ID --lesion-type {" + ",".join(LESION_TYPES) + "} "
                       "(INPUT [--later] | --qsm QSM.nii.gz) [--mask M] [--mask-index I] [--method METHOD] "
                       "[--te SECONDS...] "
                       "[--b0 TESLA] [--phase-units {" + ",".join(PHASE_UNITS) + "}] [--diagnosis TEXT] "
                       "[--gre-reference TEXT] [--patient-name NAME]")
    p.add_argument("--case-id", required=True, metavar="ID")
    p.add_argument("--lesion-type", required=True, choices=LESION_TYPES)
    # INPUT or --qsm, checked in _cmd_add_case: argparse cannot parse a positional of a mutually exclusive
    # group that follows options (the order the usage shows).
    p.add_argument("input", nargs="?", metavar="INPUT", help="BIDS anat folder or DICOM folder to reconstruct")
    p.add_argument("--qsm", metavar="QSM.nii.gz", help="an existing QSM map (NIfTI, ppm), instead of INPUT")
    p.add_argument("--mask", metavar="M", help="the chosen brain mask on the QSM grid (NIfTI); with INPUT it "
                                               "replaces the candidate masks")
    p.add_argument("--mask-index", type=int, metavar="I",
                   help="with INPUT: which of the candidate brain masks to use (default: the pipeline's choice)")
    p.add_argument("--method", default=ReconParams.method, metavar="METHOD",
                   help=f"QSM method when reconstructing INPUT (default {ReconParams.method})")
    p.add_argument("--te", type=float, nargs="+", metavar="SECONDS",
                   help="echo times in seconds when reconstructing INPUT")
    p.add_argument("--b0", type=float, metavar="TESLA",
                   help="with INPUT: field strength in tesla (default: sidecar or DICOM, else 3 with a warning)")
    add_phase_units_argument(p)
    p.add_argument("--diagnosis", metavar="TEXT", help="free text, stored as given")
    p.add_argument("--gre-reference", metavar="TEXT",
                   help="where the GRE series is kept (free text, stored as given); with INPUT the SHA-256 "
                        "fingerprint of its files is recorded as well, never its path")
    p.add_argument("--patient-name", metavar="NAME",
                   help="stored only when given; shown only by 'export --with-identifiers'")
    p.add_argument("--later", action="store_true",
                   help="with INPUT: check the GRE and store it in the study now; 'qsmrepro study process' "
                        "reconstructs it (with --method, --mask-index, --mask as given here)")

    p = _command(sub, "start-reading", _cmd_start,
                 "open a reading session (next case of the randomised order by default)")
    _observer_and_case(p, case_help="a specific case instead of the next one")
    p.add_argument("--json", action="store_true", help="print the session as JSON")
    p.add_argument("--override-washout", action="store_true", help="start before the wash-out has passed")
    p.add_argument("--reason", help="why the wash-out is overridden (required with --override-washout)")

    p = _command(sub, "finish-reading", _cmd_finish, "validate and store the segmentation of the open session")
    _observer_and_case(p)
    _segmentation_arguments(p)

    p = _command(sub, "amend-reading", _cmd_amend, "open a session that replaces a finished reading")
    _observer_and_case(p)
    p.add_argument("--reading", type=int, required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--json", action="store_true")

    p = _command(sub, "import-reading", _cmd_import, "record a reading made earlier, with its dates")
    _observer_and_case(p)
    p.add_argument("--reading", type=int, required=True)
    _segmentation_arguments(p)
    p.add_argument("--started", required=True, help="ISO-8601, e.g. 2024-01-08T09:00:00Z (UTC if no offset)")
    p.add_argument("--finished", required=True, help="ISO-8601")
    p.add_argument("--override-washout", action="store_true")
    p.add_argument("--reason")

    p = _command(sub, "process", _cmd_process,
                 "reconstruct every case that lacks a QSM, extract features, write the report (in parallel, on Dask)",
                 usage="%(prog)s [-h] DIR [--workers N | --scheduler tcp://HOST:PORT] [-o REPORT_DIR] "
                       "[--params PARAMS.yaml]")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="worker processes of a local Dask cluster (default: one per core); 0 runs everything in "
                            "this process, without Dask")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="use the workers of a running Dask scheduler instead; they must see DIR at the same path")
    p.add_argument("-o", "--output", metavar="REPORT_DIR",
                   help="where features.csv and the report go (default DIR/report)")
    p.add_argument("--params", metavar="PARAMS.yaml", help="PyRadiomics parameter file")

    p = _command(sub, "status", _cmd_status, "progress of the readings")
    p.add_argument("--json", action="store_true")

    _command(sub, "verify", _cmd_verify, "check database and files; exit code 1 if there are problems")

    p = _command(sub, "export", _cmd_export, "radiomics features of all finished readings (long table)")
    p.add_argument("-o", "--output", required=True, help="FEATURES.csv")
    p.add_argument("--params", help="PyRadiomics parameter file")
    p.add_argument("--with-identifiers", action="store_true",
                   help="add the patient name and GRE reference of each case (needs --reason; audited)")
    p.add_argument("--reason", help="why identifiers are exported (required with --with-identifiers)")


def _command(sub, name: str, handler, help_text: str, *, dir_help: str = "study folder", usage: str | None = None):
    parser = sub.add_parser(name, help=help_text, usage=usage)
    parser.add_argument("dir", metavar="DIR", help=dir_help)
    parser.set_defaults(handler=_guarded(handler))
    return parser


def _guarded(handler):
    """Every failure of a study command as one project error on one line (the CLI prints it, exit 2).

    Database and file-system errors (a locked or read-only study, a full disk) become
    :class:`ReadingError` naming the study, instead of a traceback.
    """

    @functools.wraps(handler)
    def run(args) -> int:
        try:
            return handler(args)
        except QSMReproError as exc:
            text = one_line(exc)
            if text == str(exc):
                raise
            raise type(exc)(text) from exc
        except sqlite3.Error as exc:
            raise ReadingError(f"study database {Path(args.dir) / DB_NAME}: {one_line(exc)}") from exc
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise ReadingError(f"{where}{one_line(exc.strerror or exc)}") from exc

    return run


def _segmentation_arguments(parser) -> None:
    default = label_convention()
    parser.add_argument("--segmentation", required=True, metavar="FILE",
                        help="the reading: a .seg.nrrd (saved by the reading session, or from plain 3D Slicer with "
                             "segments named lesion_right / lesion_left / csf), or a label map (NIfTI or NRRD, "
                             f"e.g. from ITK-SNAP) with the labels {default}")
    parser.add_argument("--labels", metavar="MAPPING",
                        help=f"label values of a label map, e.g. {default} (the default); labels not named are refused")
    parser.add_argument("--resample", action="store_true",
                        help="accept a segmentation on another grid by resampling it onto the QSM (nearest neighbour)")


def _observer_and_case(parser, *, case_help: str | None = None) -> None:
    parser.add_argument("--observer", required=True)
    if case_help is None:
        parser.add_argument("--case", dest="case_id", required=True)
    else:
        parser.add_argument("--case", dest="case_id", help=case_help)


def _help(parser) -> int:
    parser.print_help()
    return 2


def _session_dict(session) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(session).items()}


def _print_session(session, as_json: bool) -> None:
    if as_json:
        payload = _session_dict(session)
        payload["tags"] = session.tags()
        print(json.dumps(payload, indent=2))
        return
    kind = "amendment of reading" if session.amendment else "reading"
    print(f"Observer {session.observer}, case {session.case_id} ({session.lesion_type}), {kind} {session.reading}")
    print(f"  session:      {session.session_uid}")
    print(f"  QSM map:      {session.qsm_path}")
    print(f"  save to:      {session.segmentation_path}")
    print("  segments:     lesion_right and/or lesion_left, and csf; tags on every segment:")
    for key, value in session.tags().items():
        print(f"    {key}: {value}")


def _cmd_init(args) -> int:
    study = Study.create(args.dir, washout_days=args.washout_days, seed=args.seed,
                         readings_per_observer=args.readings_per_observer)
    print(f"Study created in {study.root.resolve()} (wash-out {study.washout_days} days, seed {study.seed})")
    study.close()
    return 0


def _cmd_add_observer(args) -> int:
    with Study.open(args.dir) as study:
        added = study.add_observer(args.observer)
    print(f"observer {args.observer} " + ("added" if added else "was already registered"))
    return 0


def _cmd_add_case(args) -> int:
    if (args.input is None) == (args.qsm is None):
        raise InputError("study add-case: give either INPUT (a BIDS anat or DICOM folder to reconstruct) or "
                         "--qsm QSM.nii.gz, " + ("not both" if args.qsm else "one of them is required"))
    if args.later and args.qsm:
        raise InputError("study add-case: --later applies to INPUT (a GRE to reconstruct), not to --qsm")
    with Study.open(args.dir) as study:
        study.check_new_case(args.case_id, args.lesion_type)  # before minutes of reconstruction
        if args.later:
            pending = study.add_gre_case(args.case_id, args.lesion_type, args.input, te_s=args.te, b0_tesla=args.b0,
                                         phase_units=args.phase_units, mask_path=args.mask,
                                         recon_params=ReconParams(method=args.method, mask_index=args.mask_index),
                                         gre_reference=args.gre_reference, diagnosis=args.diagnosis,
                                         patient_name=args.patient_name)
            print(f"case {pending.case_id} ({pending.lesion_type}) registered with its GRE ({pending.gre_folder}); "
                  "'qsmrepro study process' reconstructs it")
            return 0
        if args.qsm:
            record = study.add_case(args.case_id, args.lesion_type, args.qsm, mask_path=args.mask,
                                    gre_reference=args.gre_reference, diagnosis=args.diagnosis,
                                    patient_name=args.patient_name)
        else:
            record = _reconstruct_and_add(study, args)
    print(f"case {record.case_id} ({record.lesion_type}) added: {record.qsm_path}")
    return 0


def _reconstruct_and_add(study: Study, args):
    """Reconstruct INPUT and add the case with its QSM, the chosen brain mask and a GRE fingerprint."""
    from ..recon.pipeline import reconstruct_path, reconstruction_record

    params = ReconParams(method=args.method, mask_index=args.mask_index)
    with tempfile.TemporaryDirectory(prefix="qsmrepro-case-") as work:
        qsm = Path(work) / "qsm.nii.gz"
        # The chosen brain mask (the study's "one of nine masks, picked by eye"), not the local-field mask
        # that background removal may erode it to.
        mask = Path(work) / "mask.nii.gz"
        with ConsoleProgress(f"reconstructing {args.case_id}") as bar:
            reconstruct_path(args.input, qsm, mask_out=mask, te_s=args.te, b0_tesla=args.b0, params=params,
                             user_mask_path=args.mask, phase_units=args.phase_units, progress=bar)
        # The record the Slicer panel keeps too: read back from the QSM's sidecar.
        return study.add_case(args.case_id, args.lesion_type, qsm, mask_path=mask, gre_reference=args.gre_reference,
                              gre_input=args.input, reconstruction=reconstruction_record(qsm),
                              diagnosis=args.diagnosis, patient_name=args.patient_name)


def _cmd_start(args) -> int:
    with Study.open(args.dir) as study:
        session = study.start_reading(args.observer, args.case_id, override_washout=args.override_washout,
                                      reason=args.reason)
    _print_session(session, args.json)
    return 0


def _cmd_amend(args) -> int:
    with Study.open(args.dir) as study:
        session = study.amend_reading(args.case_id, args.observer, args.reading, reason=args.reason)
    _print_session(session, args.json)
    return 0


def _cmd_finish(args) -> int:
    with Study.open(args.dir) as study:
        session = study.open_session(args.observer, args.case_id)
        record = study.finish_reading(session.session_uid, args.segmentation, labels=args.labels,
                                      resample=args.resample)
    print(f"case {record.case_id}, observer {record.observer}, reading {record.reading} finished "
          f"{record.finished_at}: {record.segmentation_path} (sha256 {record.checksum[:12]}...)")
    return 0


def _cmd_import(args) -> int:
    with Study.open(args.dir) as study:
        record = study.import_reading(args.case_id, args.observer, args.reading, args.segmentation,
                                      started_at=args.started, finished_at=args.finished,
                                      override_washout=args.override_washout, reason=args.reason,
                                      labels=args.labels, resample=args.resample)
    print(f"case {record.case_id}, observer {record.observer}, reading {record.reading} imported "
          f"({record.started_at} - {record.finished_at})")
    return 0


def _cmd_status(args) -> int:
    with Study.open(args.dir) as study:
        summary = study.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    types = ", ".join(f"{n} {t}" for t, n in summary["cases_by_lesion_type"].items())
    print(f"Study {summary['study']}: {summary['cases']} cases ({types}); wash-out {summary['washout_days']} days; "
          f"{summary['readings_per_observer']} readings per observer; seed {summary['seed']}")
    waiting = summary["cases_waiting_for_reconstruction"]
    if waiting:
        print(f"  {len(waiting)} case(s) wait for 'qsmrepro study process' to reconstruct them: {', '.join(waiting)}")
    for case_id, error in summary["cases_failed"].items():
        print(f"  case {case_id}: the last reconstruction failed: {error}")
    if not summary["observers"]:
        print("  no observers registered")
    for observer, info in summary["observers"].items():
        done = ", ".join(f"reading {r}: {n}/{summary['cases']}" for r, n in info["finished_by_reading"].items())
        line = f"  {observer}: {done}; open sessions {info['open_sessions']}"
        if info["waiting_for_washout"]:
            line += f"; {info['waiting_for_washout']} waiting for wash-out (next opens {info['next_washout_ends']})"
        print(line)
    return 0


def _cmd_process(args) -> int:
    from ..process import format_duration, process_study

    with ConsoleProgress(f"processing {Path(args.dir).name}") as bar:
        summary = process_study(args.dir, workers=args.workers, scheduler=args.scheduler, output_dir=args.output,
                                params_path=args.params, progress=bar)
    done = len(summary.reconstructed) + len(summary.reused)
    print(f"Study {summary.study}: {done} case(s) reconstructed"
          + (f" ({len(summary.reused)} finished by an earlier run)" if summary.reused else "")
          + f"; features of {summary.readings} reading(s): {summary.features_computed} computed, "
            f"{summary.features_cached} cached; {summary.executor}; {format_duration(summary.seconds)}")
    for label, error in summary.failed.items():
        print(f"qsmrepro: error: {label}: {error}", file=sys.stderr)
    if summary.report:
        print(f"Features: {summary.features_path}")
        print(f"Report: {summary.report['report_html']}")
    elif summary.report_error:
        print(f"qsmrepro: error: report not written: {summary.report_error}", file=sys.stderr)
    elif summary.report_skipped:
        print(f"Features: {summary.features_path}")
        print(f"No report yet: {summary.report_skipped}")
    elif not summary.readings:
        print("No finished readings yet: no feature table or report.")
    if summary.failed:
        print(f"{len(summary.failed)} task(s) failed; run 'qsmrepro study process' again after fixing them "
              "(finished work is kept)", file=sys.stderr)
    return 0 if summary.ok else 1


def _cmd_verify(args) -> int:
    with Study.open(args.dir) as study:
        problems = study.verify()
        n_readings = len(study.readings())
    if problems:
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print(f"study {Path(args.dir).resolve()} is consistent ({n_readings} finished readings)")
    return 0


def _cmd_export(args) -> int:
    from ..feature_table import write_feature_table
    from ..radiomics import extract_readings

    if args.with_identifiers and not (args.reason or "").strip():
        raise ReadingError("--with-identifiers needs --reason (it is written to the study's audit log)")
    with Study.open(args.dir) as study:
        readings = study.readings()
        if not readings:
            raise ReadingError(f"the study {study.root} has no finished readings to export")
        kwargs = {"params_path": args.params} if args.params else {}
        table = extract_readings(readings, **kwargs)
        if args.with_identifiers:
            identifiers = study.identifiers(purpose=args.reason)
            for column in ("patient_name", "gre_reference"):
                table[column] = table["case_id"].map(lambda case_id: identifiers[case_id][column])
    output = write_feature_table(table, args.output)
    print(f"{len(readings)} readings, {len(table)} rows -> {output.resolve()}")
    return 0
