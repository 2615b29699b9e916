"""The FinOps ``focus-validator`` package, run as its CLI documents, in an environment of its
own: on Python 3.11 its newest release (1.0.0) pins ``numpy<2`` while the ledger's
``pyarrow`` needs NumPy 2, so it cannot share the test environment. The environment is
made once (``python -m venv`` + ``pip install VALIDATOR_REQUIREMENTS``) under
``$LLMRING_TEST_CACHE`` (default ``.cache/`` in the repository, ignored by git) and
reused.

Validator 1.0.0 checks FOCUS 1.0 (its newest rule set); ``validate`` answers the name and
outcome of each of its checks from its JUnit report.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.support.paths import REPO

VALIDATOR_VERSION = "1.0.0"
RULES_VERSION = "1.0"  # the newest FOCUS version validator 1.0.0 has rules for
# pandera 0.17 (its pin) imports multimethod.overload, gone in multimethod 2; the
# validator's pandas reads Parquet with pyarrow, which must be built for numpy<2.
VALIDATOR_REQUIREMENTS = (f"focus-validator=={VALIDATOR_VERSION}", "multimethod<2",
                          "pyarrow<18")


def _home() -> Path:
    cache = Path(os.environ.get("LLMRING_TEST_CACHE", REPO / ".cache"))
    return cache / f"focus-validator-{VALIDATOR_VERSION}"


def _python(home: Path) -> Path:
    return home / "venv" / "bin" / "python"


def environment() -> Path:
    """The validator environment's Python, made on first use (one maker at a time)."""
    home = _home()
    ready = home / "ready"
    if ready.exists():
        return _python(home)
    home.mkdir(parents=True, exist_ok=True)
    with (home / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            _make(home)
    return _python(home)


def _make(home: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(home / "venv")],
                   check=True, capture_output=True, timeout=300)
    pip = subprocess.run([str(_python(home)), "-m", "pip", "install", "-q",
                          *VALIDATOR_REQUIREMENTS], capture_output=True, text=True,
                         timeout=900)
    if pip.returncode:
        raise RuntimeError(f"cannot install {' '.join(VALIDATOR_REQUIREMENTS)}:\n"
                           f"{pip.stdout}\n{pip.stderr}")
    (home / "ready").write_text("\n".join(VALIDATOR_REQUIREMENTS) + "\n")


def validate(data_file: Path) -> dict[str, str | None]:
    """Run ``focus-validator --data-file FILE --validate-version 1.0`` on ``data_file``
    (``.csv`` or ``.parquet``): each check's name (``Column_Rule``) and its failure
    message, None for a check that passed."""
    python = environment()
    report = data_file.with_name(data_file.name + ".xml")
    # The validator opens its currency list by a path relative to its site-packages.
    site = subprocess.run([str(python), "-c", "import focus_validator, os; print(os.path."
                           "dirname(os.path.dirname(focus_validator.__file__)))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    run = subprocess.run(
        [str(python), "-m", "focus_validator.main", "--data-file", str(data_file),
         "--validate-version", RULES_VERSION, "--output-type", "unittest",
         "--output-destination", str(report)],
        capture_output=True, text=True, cwd=site, timeout=300)
    if run.returncode or not report.exists():
        raise RuntimeError(f"focus-validator failed on {data_file}:\n{run.stderr}")
    checks: dict[str, str | None] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "").split(" :: ")[0]
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        checks[name] = None if failure is None else failure.get("message") or "failed"
    return checks
