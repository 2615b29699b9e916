"""The independent Go verifier of ``tests/independent/tlogverify``, built offline with
Debian's ``golang-go`` and ``golang-golang-x-mod-dev`` (GOPATH mode against the packaged
x/mod sources, no module proxy) into ``$LLMRING_TEST_CACHE`` (default ``.cache/`` in the
repository, ignored by git), and rebuilt when its source changes."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.support.paths import REPO

SOURCE = REPO / "tests" / "independent" / "tlogverify"
GOPATH = Path("/usr/share/gocode")  # where golang-golang-x-mod-dev installs x/mod
X_MOD = GOPATH / "src" / "golang.org" / "x" / "mod" / "sumdb"


def missing() -> str | None:
    """Why the verifier cannot be built here, or None."""
    if shutil.which("go") is None:
        return "no `go` here (apt-get install golang-go golang-golang-x-mod-dev)"
    if not X_MOD.is_dir():
        return f"no golang.org/x/mod sources in {X_MOD} (apt-get install golang-golang-x-mod-dev)"
    return None


def binary() -> Path:
    """The built verifier, built on first use for the current source (one builder at a
    time)."""
    cache = Path(os.environ.get("LLMRING_TEST_CACHE", REPO / ".cache")) / "tlogverify"
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(SOURCE.glob("*.go"))))
    out = cache / f"tlogverify-{digest.hexdigest()[:16]}"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.exists():
            env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH),
                   "GOPROXY": "off", "GOFLAGS": "", "GOCACHE": str(cache / "go-build")}
            build = subprocess.run(["go", "build", "-o", str(out) + ".tmp", "."], cwd=SOURCE,
                                   env=env, capture_output=True, text=True, timeout=600)
            if build.returncode:
                raise RuntimeError(f"go build failed:\n{build.stderr}")
            os.replace(str(out) + ".tmp", out)
    return out


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary()), *args], capture_output=True, text=True, timeout=120)
