"""Every command line the README shows, and every ``--help`` usage line, works as written.

The command lines are read from the README's fenced blocks (not copied here) and expanded with the usage
grammar they are written in: ``[ … ]`` optional, ``( … | … )`` one of, ``a|b`` and ``{a,b}`` a choice,
``NAME...`` one or more, ``...`` a value of the option before it. Every expansion is parsed by the real
parser; one expansion per alternative, with every optional part, is run on real files made here (a
phantom case as BIDS, DICOM and 4-D NIfTI, label maps), in the order a site would run them. The usage
line of each ``--help`` is expanded the same way and parsed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from QSMReproducibilityLib.cli import build_parser, main
from QSMReproducibilityLib.phantom import CSF, LESION_LABEL, simulate_case

from gre_dicom import write_dicom_gre

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Za-z.]+)?(\.\.\.)?$")
# The order a site runs the commands in; a README command missing here fails the test.
ORDER = ["study init", "study add-observer", "study add-case", "study process", "study start-reading",
         "study finish-reading",
         "study import-reading", "study status", "study verify", "study export", "reconstruct", "extract", "demo",
         "agreement", "station"]
# Optional parts parsed but not run: the whole 320x240x70 matrix for every demo case takes minutes.
NOT_RUN = {"--full-fov"}
# Commands parsed here but run elsewhere: the reading station serves until it is stopped, so
# test_station_e2e.py runs it as written (with and without --host/--port) in a process of its own.
RUN_ELSEWHERE = {"station"}


# ---------------------------------------------------------------------------------------------------
# The usage grammar


def readme_commands() -> list[str]:
    """Every ``qsmrepro`` line of the README's fenced blocks, with its indented continuation lines."""
    commands = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M):
        current = None
        for line in block.splitlines():
            if line.startswith("qsmrepro "):
                if current:
                    commands.append(current)
                current = line.strip()
            elif current and line[:1].isspace() and line.strip():
                current += " " + line.strip()
            else:
                if current:
                    commands.append(current)
                current = None
        if current:
            commands.append(current)
    return commands


def tokens(text: str) -> list[str]:
    out = []
    for word in text.split():
        while word[:1] in "[(" and word not in ("[", "("):
            out.append(word[0])
            word = word[1:]
        tail = []
        while word[-1:] in "])" and word not in ("]", ")"):
            tail.append(word[-1])
            word = word[:-1]
        out.append(word)
        out.extend(reversed(tail))
    return out


def parse(items: list[str], position: int = 0, closing: str | None = None):
    """Token list → tree: a list of words and ('opt' | 'one', id, [alternative, ...]) groups."""
    alternatives, sequence = [], []
    while position < len(items):
        token = items[position]
        position += 1
        if token in ("[", "("):
            alts, position = parse(items, position, "]" if token == "[" else ")")
            sequence.append(("opt" if token == "[" else "one", next(_ids), alts))
        elif token == closing:
            alternatives.append(sequence)
            return alternatives, position
        elif token == "|" and closing is not None:
            alternatives.append(sequence)
            sequence = []
        else:
            sequence.append(token)
    assert closing is None, f"unbalanced {closing}"
    return sequence, position


_ids = itertools.count()


def groups(tree) -> list[tuple]:
    found = []
    for item in tree:
        if isinstance(item, tuple):
            found.append(item)
            for alternative in item[2]:
                found.extend(groups(alternative))
    return found


def render(tree, choice: dict, default_optional: bool) -> list[str]:
    words = []
    for item in tree:
        if not isinstance(item, tuple):
            words.append(item)
            continue
        kind, gid, alternatives = item
        picked = choice.get(gid, 0 if (kind == "one" or default_optional) else None)
        if picked is not None:
            words.extend(render(alternatives[picked], choice, default_optional))
    return words


def variants(text: str) -> tuple[list[list[str]], list[list[str]]]:
    """(every expansion to parse, the expansions to run): the minimal one, the maximal one, and each
    alternative of each group in the maximal one; run: the maximal ones without the parts in NOT_RUN."""
    tree, _ = parse(tokens(text))
    all_groups = groups(tree)
    parse_only = [render(tree, {}, False), render(tree, {}, True)]
    maximal = [render(tree, {}, True)]
    for kind, gid, alternatives in all_groups:
        for index in range(1, len(alternatives)):
            parse_only.append(render(tree, {gid: index}, False))
            maximal.append(render(tree, {gid: index}, True))
    to_run = []
    for words in maximal:
        trimmed = [w for w in words if w not in NOT_RUN]
        if trimmed not in to_run:
            to_run.append(trimmed)
    return parse_only + maximal, to_run


def command_of(words: list[str]) -> str:
    return " ".join(words[1:3]) if words[1] == "study" else words[1]


# ---------------------------------------------------------------------------------------------------
# Real files for the placeholders


class Inputs:
    """The files and values the README's placeholders stand for, made once for the whole module."""

    def __init__(self, root: Path):
        self.root = root
        self.case = simulate_case("H1", "hematoma", seed=4, out_dir=root / "phantom", shape=(64, 64, 16))
        self.side = self.case.sides[0]
        self.dicom = root / "dicom"
        write_dicom_gre(self.case.anat_dir, self.dicom, {})
        parts = {}
        for part in ("mag", "phase"):
            files = sorted(self.case.anat_dir.glob(f"*_part-{part}_MEGRE.nii"))
            stack = np.stack([np.asarray(nib.load(f).dataobj) for f in files], axis=-1)
            parts[part] = root / f"{part}_4d.nii.gz"
            nib.save(nib.Nifti1Image(stack.astype(np.float32), self.case.affine), parts[part])
        self.magnitude, self.phase = parts["mag"], parts["phase"]
        truth = np.asarray(nib.load(self.case.labels_path).dataobj).astype(int)
        self.brain_mask = root / "brain_mask.nii.gz"
        nib.save(nib.Nifti1Image(((truth > 0) & (truth != 7)).astype(np.uint8), self.case.affine), self.brain_mask)
        # The reading as another tool saves it: a label map in the documented convention.
        labels = np.zeros(truth.shape, np.uint8)
        labels[truth == LESION_LABEL[self.side]] = {"right": 1, "left": 2}[self.side]
        labels[truth == CSF] = 3
        self.label_map = root / "reading_labels.nii.gz"
        nib.save(nib.Nifti1Image(labels, self.case.affine), self.label_map)
        self.study = root / "study"
        self.runs = itertools.count(1)
        self._cluster = None

    def scheduler(self) -> str:
        """The address of a real Dask scheduler with one worker process, for `--scheduler tcp://HOST:PORT`."""
        if self._cluster is None:
            from dask.distributed import LocalCluster

            self._cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0")
        return self._cluster.scheduler_address

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()

    def value(self, command: str, option: str | None, index: int, placeholder: str, run: int,
              words: list[str]) -> list[str]:
        out = self.root / "out"
        many = placeholder.endswith("...")
        name = placeholder.removesuffix("...")
        if command.startswith("study"):
            table = {
                "DIR": self.study, "O": "O1", "TEXT": "the reader leaves the department", "S": "7",
                "INPUT": self.case.anat_dir, "QSM.nii.gz": self.case.chi_path, "TESLA": "3",
                "ID": {"study add-case": "C2" if "--qsm" in words else "C1",
                       "study import-reading": "C2"}.get(command, "C1"),
                "FILE": self.label_map, "N": "1",
                "ISO": "2023-01-10T09:00:00Z" if option == "--started" else "2023-01-10T09:20:00Z",
                "FEATURES.csv": out / f"run{run}_study_features.csv",
                "REPORT_DIR": out / f"run{run}_study_report", "PARAMS.yaml": REPO / "Resources" / "QSMRadiomics.yaml",
            }
            if command == "study process" and option == "--workers":
                table["N"] = "1"
        elif command == "reconstruct":
            table = {
                "ANAT_DIR": self.case.anat_dir, "DICOM_DIR": self.dicom,
                "NIFTI": self.magnitude if option == "--magnitude" else self.phase,
                "SECONDS": [str(t) for t in self.case.te_s], "QSM.nii.gz": out / f"run{run}_qsm.nii.gz",
                "I": "4", "M": self.brain_mask if option == "--mask" else out / f"run{run}_mask.nii.gz",
                "PNG": out / f"run{run}_masks.png", "TESLA": "3", "X": "0", "Y": "0", "Z": "1",
                "F": out / f"run{run}_field.nii.gz",
            }
        elif command == "extract":
            table = {"QSM_IMAGE": self.study / "cases" / "C1" / "qsm.nii.gz",
                     "SEGMENTATION": self.study / "readings" / "C1" / "O1_r1.seg.nrrd",
                     "PARAMS.yaml": REPO / "Resources" / "QSMRadiomics.yaml",
                     "FEATURES.csv": out / f"run{run}_features.csv"}
        elif command == "demo":
            table = {"DIR": self.root / "demo", "N": "5", "S": "0"}
        elif command == "station":
            table = {"STUDY_DIR": self.study, "O": "O1", "HOST": "127.0.0.1", "P": "0"}
        elif command == "agreement":
            table = {"FEATURES.csv": self.root / "demo" / "features.csv", "DIR": out / f"run{run}_report"}
        else:
            table = {}
        assert name in table, f"README placeholder {placeholder} of `qsmrepro {command}` has no value in this test"
        value = table[name]
        values = value if isinstance(value, list) else [value]
        assert many or len(values) == 1
        return [str(v) for v in values]


def choices_of(command: str, option: str) -> list[str]:
    parser = build_parser()
    for name in command.split():
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    action = next(a for a in parser._actions if option in a.option_strings)
    assert action.choices, f"`{command} {option} ...`: the option offers no choices"
    return [str(c) for c in action.choices]


def instantiate(words: list[str], inputs: Inputs, run: int) -> list[str]:
    command = command_of(words)
    argv, option, index = [], None, 0
    for word in words[1:]:
        if word.startswith("-"):
            option, index = word, 0
            argv.append(word)
        elif word == "...":
            argv.append(choices_of(command, option)[0])
        elif word == "tcp://HOST:PORT":
            argv.append(inputs.scheduler())
        elif word.startswith("{") and word.endswith("}"):
            argv.append(word[1:-1].split(",")[0])
        elif "|" in word:
            argv.append(word.split("|")[0])
        elif PLACEHOLDER.match(word):
            argv.extend(inputs.value(command, option, index, word, run, words))
            index += 1
        else:
            argv.append(word)
    return argv


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    made = Inputs(tmp_path_factory.mktemp("readme"))
    yield made
    made.close()


def test_the_readme_shows_every_command_in_the_site_order():
    shown = {command_of(tokens(text)) for text in readme_commands()}
    assert shown == set(ORDER), (sorted(shown - set(ORDER)), sorted(set(ORDER) - shown))


def test_every_readme_command_line_runs_as_written(inputs, capsys):
    pytest.importorskip("radiomics", reason="extract, export and demo need PyRadiomics (no build for Python >= "
                                            "3.12; inside 3D Slicer it comes from the SlicerRadiomics extension)")
    lines = sorted(readme_commands(), key=lambda text: ORDER.index(command_of(tokens(text))))
    ran = []
    for text in lines:
        to_parse, to_run = variants(text)
        for words in to_parse:  # every expansion is accepted by the parser
            argv = instantiate(words, inputs, 0)
            try:
                build_parser().parse_args(argv)
            except SystemExit:
                pytest.fail(f"README `{text}` expanded as `qsmrepro {' '.join(argv)}` is refused by the parser:\n"
                            f"{capsys.readouterr().err}")
        for words in to_run:
            if command_of(words) in RUN_ELSEWHERE:
                continue
            argv = instantiate(words, inputs, next(inputs.runs))
            code = main(argv)
            captured = capsys.readouterr()
            assert code == 0, f"qsmrepro {' '.join(argv)}\n{captured.err}"
            ran.append((command_of(words), argv, captured.out))

    # What the commands made is what they promise.
    root = inputs.root
    assert {r.case_id for r in _study(inputs).readings()} == {"C1", "C2"}
    assert _study(inputs).verify() == []
    reconstructions = sorted((root / "out").glob("run*_qsm.nii.gz"))
    assert len(reconstructions) == sum(command == "reconstruct" for command, _, _ in ran) >= 4
    for qsm in reconstructions:
        sidecar = json.loads(qsm.with_name(qsm.name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["PhaseUnits"] in ("radians", "siemens")  # BIDS/NIfTI phase in radians, DICOM in Siemens units
    assert (root / "demo" / "report.html").is_file()
    assert any((root / "out").glob("run*_report/report.html"))
    features = next((root / "out").glob("run*_features.csv")).read_text()
    assert "qsm_mean" in features


def _study(inputs: Inputs):
    from QSMReproducibilityLib.readings import Study

    return Study.open(inputs.study)


# ---------------------------------------------------------------------------------------------------
# --help


def leaf_parsers(parser, path=()) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = []
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        return [(path, parser)]
    for name, child in subparsers[0].choices.items():
        found.extend(leaf_parsers(child, path + (name,)))
    return found


def help_argv(usage: str, path: tuple[str, ...], parser: argparse.ArgumentParser, maximal: bool) -> list[str]:
    """A usage line of argparse's help filled with values its parser accepts (minimal or with every option)."""
    text = usage.removeprefix("usage:").strip()
    words = render(parse(tokens(text))[0], {}, maximal)
    by_option = {s: a for a in parser._actions for s in a.option_strings}
    argv, action = list(path), None
    for word in words[1 + len(path):]:
        if word in ("-h", "--help", "--version") or word == "...":
            continue
        if word.startswith("-"):
            action = by_option[word]
            argv.append(word)
        elif word.startswith("{") or (action is not None and (action.choices or action.type in (int, float))):
            argv.append(str(list(action.choices)[0]) if action.choices else "1")
        else:
            argv.append("x")
            if word == word.upper() and action is not None and action.nargs in (None, 1):
                action = None
    return argv


def test_every_help_usage_line_parses_as_written():
    for path, parser in leaf_parsers(build_parser()):
        usage = parser.format_usage()
        assert usage.split()[1:2 + len(path)] == ["qsmrepro", *path], usage
        for maximal in (False, True):
            argv = help_argv(usage, path, parser, maximal)
            try:
                build_parser().parse_args(argv)
            except SystemExit:
                pytest.fail(f"`{' '.join(usage.split())}` filled in as `qsmrepro {' '.join(argv)}` is refused")
