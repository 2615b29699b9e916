"""The helper process: the second core prepares part of every large batch.

Preparing a batch (``ledger.model.batch.prepare_batch``: checks, prices, ids, canonical bytes,
hashes) is work that one interpreter does on one core. In the pure-Python build (no
``ledger.model._native``) it is the larger part of an append, and for a batch of at
least ``MIN_EVENTS`` events priced by the packaged price book, ``prepare`` sends the
last ``SHARE`` of the events to one helper process and prepares the rest itself
meanwhile; the two parts are then joined. The helper (``python -m ledger.model.helper``,
started on the first large batch and shared by every ledger in the process; it never
imports the caller's ``__main__``) is stateless, with its own ``PriceBook`` of the same
packaged prices, so the result is the one ``prepare_batch`` gives, and an invalid event
is reported with its index in the whole batch. Until the helper is up, and if it dies,
batches are prepared here alone. With the C loops a batch is prepared here faster than
its part would travel to the helper and back (measured: 120k events/s alone against
100k shared), so ``USE_HELPER`` is off.

Protocol over the helper's stdin/stdout: frames of ``u64 length | pickle``. It writes one
``b"ready"`` frame once it has started, then answers each request ``(events, tenant,
received_us, offset)`` with a ``PreparedBatch`` or ``("invalid", problems, index)``.
"""

from __future__ import annotations

import atexit
import gc
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from ledger.model.batch import NATIVE, PreparedBatch, prepare_batch
from ledger.model.event import EventValidationError
from ledger.model.pricing import is_packaged_book

USE_HELPER = not NATIVE  # see the module docstring
MIN_EVENTS = 4_096  # smaller batches are prepared here alone
SHARE = 0.4  # the part of a large batch the helper prepares (measured best on 2 cores)
_HEAD = struct.Struct("<Q")
HELPER_WAIT = 1.0  # seconds a large batch waits for the helper before preparing alone


class _Helper:
    def __init__(self) -> None:
        # The parent's import path, so the helper imports this very ``ledger`` package.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ledger.model.helper"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True, env=env)
        self.ready = False

    def poll_ready(self) -> bool:
        if not self.ready and self.proc.poll() is None:
            out = self.proc.stdout
            assert out is not None
            if select.select([out], [], [], 0)[0]:
                self.ready = _read(out) == b"ready"
        return self.ready and self.proc.poll() is None

    def send(self, request: Any) -> None:
        assert self.proc.stdin is not None
        _write(self.proc.stdin, pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))

    def receive(self) -> Any:
        assert self.proc.stdout is not None
        data = _read(self.proc.stdout)
        if data is None:
            raise OSError("the helper process stopped")
        return pickle.loads(data)

    def stop(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


_lock = threading.Lock()  # one request at a time; others wait for it (up to HELPER_WAIT)
_state_lock = threading.Lock()
_helper: _Helper | None = None
_deaths = 0  # helpers that could not start or died; after MAX_DEATHS, no more are started
MAX_DEATHS = 3


def _write(stream: IO[bytes], data: bytes) -> None:
    stream.write(_HEAD.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read(stream: IO[bytes]) -> bytes | None:
    head = stream.read(_HEAD.size)
    if len(head) < _HEAD.size:
        return None
    (length,) = _HEAD.unpack(head)
    data = stream.read(length)
    return data if len(data) == length else None


def _usable_cpus() -> int:
    affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere every CPU counts
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def _available() -> _Helper | None:
    """The helper if it is up (starting it, for the next batch, if there is none)."""
    global _helper, _deaths
    with _state_lock:
        if _helper is None:
            if _usable_cpus() < 2 or _deaths >= MAX_DEATHS:
                return None
            try:
                _helper = _Helper()
            except OSError:
                _deaths += 1
                return None
            return None
        if _helper.proc.poll() is not None:  # it died: start another for next time
            _helper = None
            _deaths += 1
            return None
        return _helper if _helper.poll_ready() else None


def shutdown() -> None:
    """Stop the helper (a later large batch starts it again)."""
    global _helper
    with _state_lock:
        if _helper is not None:
            _helper.stop()
            _helper = None


atexit.register(shutdown)


def prepare(events: Sequence[Any], *, tenant: str, received_us: int,
            pricer: Any) -> PreparedBatch:
    """``prepare_batch``, with the helper taking part for a large batch."""
    if (USE_HELPER and len(events) >= MIN_EVENTS and is_packaged_book(pricer)
            and _lock.acquire(timeout=HELPER_WAIT)):
        try:
            helper = _available()
            if helper is not None:
                return _prepare_shared(helper, events, tenant, received_us, pricer)
        finally:
            _lock.release()
    return prepare_batch(events, tenant=tenant, received_us=received_us, pricer=pricer)


def _prepare_shared(helper: _Helper, events: Sequence[Any], tenant: str, received_us: int,
                    pricer: Any) -> PreparedBatch:
    cut = len(events) - int(len(events) * SHARE)
    try:
        helper.send((list(events[cut:]), tenant, received_us, cut))
    except (OSError, pickle.PicklingError, TypeError):
        helper.stop()
        return prepare_batch(events, tenant=tenant, received_us=received_us, pricer=pricer)
    try:
        local = prepare_batch(events[:cut], tenant=tenant, received_us=received_us,
                              pricer=pricer)
    finally:
        try:  # always take the answer, so the next request gets its own
            remote = helper.receive()
        except (OSError, EOFError, pickle.UnpicklingError):
            helper.stop()
            remote = None
    if remote is None:
        remote = prepare_batch(events[cut:], tenant=tenant, received_us=received_us,
                               pricer=pricer)
    if isinstance(remote, tuple):
        _, problems, index = remote
        raise EventValidationError(problems, index=index)
    local.extend(remote)
    return local


def main() -> None:
    """The helper's loop (``python -m ledger.model.helper``)."""
    from ledger.model.pricing import PriceBook

    book = PriceBook()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    gc.freeze()  # what the imports made lives as long as the helper: never scan it again
    _write(stdout, b"ready")
    while True:
        data = _read(stdin)
        if data is None:
            return
        # A request's objects are freed by reference counting when it is answered; the
        # collector, paused meanwhile (as the ledger does for a large batch), would only
        # scan them again and again while they are made.
        gc.disable()
        try:
            events, tenant, received_us, offset = pickle.loads(data)
            try:
                answer: Any = prepare_batch(events, tenant=tenant, received_us=received_us,
                                            pricer=book)
            except EventValidationError as exc:
                answer = ("invalid", exc.problems, offset + (exc.index or 0))
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            gc.enable()
        _write(stdout, data)


if __name__ == "__main__":
    main()
