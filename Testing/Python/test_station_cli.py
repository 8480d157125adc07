"""``qsmrepro station`` on bad input: one line naming the problem, exit code 2, nothing served or written.

Without the ``station`` extra the command says in one line how to install it (the main test environment);
with it (``.venv-station``), a folder that is no study, an observer the study does not know and a port
in use are refused before anything is served. The token helpers are checked on their own.
"""

from __future__ import annotations

import re
import socket

import pytest

import station_support as support
from QSMReproducibilityLib.cli import main
from QSMReproducibilityLib.readings import Study
from QSMReproducibilityLib.station import access

MISSING = support.missing_station_packages()


def _run(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.skipif(MISSING is None, reason="the station extra is installed here")
def test_without_the_station_extra_one_line_says_how_to_install_it(tmp_path, capsys):
    study = support.make_study(tmp_path, cases=1)
    before = _files(tmp_path)
    code, err = _run(["station", study, "--observer", "O1"], capsys)
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith("qsmrepro: error:") and "station" in line and "pip install" in line
    assert _files(tmp_path) == before


@pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
def test_bad_study_observer_or_port_is_refused_in_one_line_before_anything_is_served(tmp_path, capsys):
    study = support.make_study(tmp_path, cases=1)
    before = _files(tmp_path)
    cases = {
        "no study": (["station", tmp_path / "maps", "--observer", "O1"], r"not a study folder"),
        "unknown observer": (["station", study, "--observer", "O9"], r"observer 'O9' is not registered .*add-observer"),
        "bad port": (["station", study, "--observer", "O1", "--port", "70000"], r"--port 70000"),
        "bad host": (["station", study, "--observer", "O1", "--host", "no-such-host.invalid"], r"--host no-such-host"),
    }
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases["port in use"] = (["station", study, "--observer", "O1", "--port", port], rf"port {port} .* in use")
        for label, (argv, pattern) in cases.items():
            code, err = _run(argv, capsys)
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1, (label, err)
            assert lines[0].startswith("qsmrepro: error:"), label
            assert re.search(pattern, lines[0]), (label, lines[0])
    assert _files(tmp_path) == before
    with Study.open(study) as store:
        assert store.observers() == ["O1", "O2"]       # a mistyped observer is not registered by the attempt


def test_the_token_is_random_long_and_compared_whole():
    tokens = {access.new_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) >= 43 for t in tokens)           # 32 bytes in URL-safe base64
    token = next(iter(tokens))
    assert access.token_matches(token, token)
    for wrong in (None, "", token[:-1], token + "x", token.upper() if token.upper() != token else token[1:]):
        assert not access.token_matches(wrong, token)
    assert access.cookie_name(8080) != access.cookie_name(8081)   # stations on one host keep their cookies apart


def test_the_station_command_is_in_the_help():
    from QSMReproducibilityLib.cli import build_parser

    assert "station" in build_parser().format_help()
