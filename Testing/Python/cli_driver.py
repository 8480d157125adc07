"""Test helper: run ``qsmrepro`` commands through ``QSMReproducibilityLib.cli.main`` in one fresh interpreter.

Each command gets its own stdout and stderr (and logging bound to that stderr), so that an exception escaping
``main`` shows as a traceback there; with ``root``, every file below it is hashed before and after each
command, and the paths that changed are returned.
"""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_DRIVER = r"""
import contextlib, hashlib, io, json, logging, os, sys, traceback
from QSMReproducibilityLib.cli import main

def listing(root):
    files = {}
    for folder, dirs, names in os.walk(root) if root else ():
        for name in dirs:
            files[os.path.relpath(os.path.join(folder, name), root) + "/"] = ""
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return files

plan = json.load(sys.stdin)
results = {}
for label, argv in plan["commands"].items():
    before = listing(plan["root"])
    out, err = io.StringIO(), io.StringIO()
    logging.root.handlers.clear()   # main() configures logging onto this command's stderr
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        except BaseException:
            traceback.print_exc()
            code = None
    after = listing(plan["root"])
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    results[label] = [code, out.getvalue(), err.getvalue(), changed]
print(json.dumps(results))
"""


def run_commands(commands: dict, *, root=None, timeout: float = 900) -> dict:
    """``{label: argv}`` → ``{label: [exit code, stdout, stderr, changed paths below root]}``."""
    plan = {"root": str(root) if root else None,
            "commands": {label: [str(a) for a in argv] for label, argv in commands.items()}}
    proc = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps(plan), capture_output=True,
                          encoding="utf-8", cwd=REPO, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def qsmrepro(*args, cwd=REPO, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m QSMReproducibilityLib.cli ARGS...`` as the shell would: exit code, stdout and stderr (UTF-8)."""
    return subprocess.run([sys.executable, "-m", "QSMReproducibilityLib.cli", *map(str, args)], capture_output=True,
                          encoding="utf-8", cwd=cwd, timeout=timeout)
