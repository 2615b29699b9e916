"""Submission of the projects' checkpoints to their witnesses, in ``llmring serve``
(c2sp.org/tlog-witness, docs/http-api.md): a background thread that, for each witness
with a URL in the data directory's ``witnesses.policy`` and each project whose latest
signed checkpoint that witness has not cosigned, sends ``POST <URL>/add-checkpoint``
with a consistency proof from the size the witness last cosigned
(``ledger.tlog.witnessing``). A 409 (``text/x.tlog.size``) answer is re-proved from the
size the witness holds; 403, 404, 422, other answers and network failures are recorded
and retried with exponential backoff. Cosignatures received are verified against the
policy's key and stored with the checkpoint (``CosignatureStore``), so the served
checkpoint and later proof bundles carry them. Appends never wait for any of this.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.errors import CosignatureError, NoteError
from ledger.tlog.checkpoint import SignedCheckpoint, parse_note
from ledger.tlog.cosignature import CosignerKey
from ledger.tlog.policy import Policy
from ledger.tlog.signing import now_text
from ledger.tlog.witnessing import (
    MAX_ANSWER,
    WitnessState,
    add_checkpoint_body,
    cosignatures_in,
    parse_size_answer,
)

if TYPE_CHECKING:  # httpx is imported when a witness is first contacted
    import httpx

log = logging.getLogger("llmring.witnesses")
USER_AGENT = "llmring-ledger-witness-client"
MAX_REPROOFS = 3  # 409 answers followed by a new proof, per submission


@dataclass(frozen=True)
class SubmissionPolicy:
    """How the server talks to witnesses (``llmring serve --witness-…``)."""

    interval: float = 1.0  # seconds between looks for checkpoints not yet cosigned
    timeout: float = 10.0  # seconds one request may take
    backoff: float = 1.0  # seconds before the first retry after a failure; doubles
    backoff_max: float = 300.0


class WitnessSubmitter:
    """The thread submitting checkpoints to the policy's witnesses (module docstring)."""

    def __init__(self, ledger: Any, policy: Policy, settings: SubmissionPolicy | None = None
                 ) -> None:
        self.ledger = ledger
        self.policy = policy
        self.settings = settings or SubmissionPolicy()
        self.state = WitnessState(ledger.layout.witness_state)
        self._due: dict[tuple[str, str], float] = {}  # (witness, origin) → monotonic time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None

    def start(self) -> None:
        if not self.policy.submission_targets():
            return
        import httpx

        self._http = httpx.Client(timeout=self.settings.timeout, follow_redirects=False,
                                  headers={"User-Agent": USER_AGENT})
        self._thread = threading.Thread(target=self._run, name="llmring-witnesses",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._http is not None:
            self._http.close()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.interval):
            try:
                self.round()
            except Exception:  # a bug or an unreadable store: say so, try again later
                log.exception("witness submission round failed")

    def round(self) -> None:
        """Submit every project's latest checkpoint to each witness that lacks it and is
        due (not backing off)."""
        notary = self.ledger.notary
        for tenant in self.ledger.tenants():
            origin = notary.log_origin(tenant)
            signed = notary.checkpoints.latest(origin)
            if signed is None:
                continue
            for name, key, url in self.policy.submission_targets():
                if self._stop.is_set():
                    return
                rec = self.state.record(name, origin)
                cp = signed.checkpoint
                if rec.get("size") == cp.size and rec.get("root") == cp.root.hex() \
                        and not rec.get("last_error"):
                    continue
                if self._due.get((name, origin), 0.0) > time.monotonic():
                    continue
                self.submit(tenant, signed, name, key, url)

    def submit(self, tenant: str, signed: SignedCheckpoint, name: str, key: CosignerKey,
               url: str) -> bool:
        """One submission of ``signed`` to the witness ``name``; True once cosigned."""
        import httpx

        origin, size = signed.checkpoint.origin, signed.checkpoint.size
        old = int(self.state.record(name, origin).get("size") or 0)
        error = None
        for _ in range(MAX_REPROOFS + 1):
            if old > size:
                error = (f"the witness holds {origin} at size {old}, larger than the "
                         f"ledger's checkpoint ({size}): it saw another view of this log")
                break
            try:
                proof = (self.ledger.tree(tenant).consistency_proof(old, size)
                         if 0 < old < size else [])
                answer = self._post(url, add_checkpoint_body(old, proof, signed.note))
            except (httpx.HTTPError, OSError, ValueError) as exc:
                error = f"cannot reach {url}: {exc}"
                break
            status, ctype, text = answer
            if status == 200:
                try:
                    sigs = cosignatures_in(text, parse_note(signed.note).text, key)
                except (CosignatureError, NoteError, ValueError) as exc:
                    error = f"200 without a valid cosignature: {exc}"
                    break
                self.ledger.notary.cosignatures.add(signed, sigs)
                self.state.update(name, origin, size=size, root=signed.checkpoint.root.hex(),
                                  cosigned_at=now_text(), last_attempt=now_text(),
                                  last_error=None, failures=0)
                self._due.pop((name, origin), None)
                return True
            if status == 409 and ctype.split(";")[0].strip() == "text/x.tlog.size":
                try:
                    held = parse_size_answer(text)
                except ValueError as exc:
                    error = f"409 {exc}"
                    break
                if held == old:  # the same size with another root: a fork
                    error = (f"409: the witness holds another checkpoint of {origin} at "
                             f"size {held} than the ledger signed (a fork of this log)")
                    break
                old = held  # re-prove from the size the witness holds
                self.state.update(name, origin, size=held, root=None)
                continue
            error = f"{status}: {text.strip()[:300] or '(no body)'}"
            break
        else:
            error = f"still 409 after {MAX_REPROOFS} new proofs"
        self._failed(name, origin, error)
        return False

    def _post(self, url: str, body: bytes) -> tuple[int, str, str]:
        import httpx

        if self._http is None:  # submit() called without start()
            self._http = httpx.Client(timeout=self.settings.timeout, follow_redirects=False,
                                      headers={"User-Agent": USER_AGENT})
        target = url.rstrip("/") + "/add-checkpoint"
        with self._http.stream("POST", target, content=body,
                               headers={"Content-Type": "text/plain; charset=utf-8"}) as r:
            raw = b""
            for chunk in r.iter_bytes():
                raw += chunk
                if len(raw) > MAX_ANSWER:
                    raise ValueError(f"the answer of {target} exceeds {MAX_ANSWER} bytes")
            return r.status_code, r.headers.get("content-type", ""), raw.decode(
                "utf-8", "replace")

    def _failed(self, name: str, origin: str, error: str) -> None:
        rec = self.state.record(name, origin)
        failures = int(rec.get("failures") or 0) + 1
        self.state.update(name, origin, last_attempt=now_text(), last_error=error,
                          failures=failures)
        delay = min(self.settings.backoff * 2 ** (failures - 1), self.settings.backoff_max)
        self._due[(name, origin)] = time.monotonic() + delay
        log.warning("witness %s, %s: %s (attempt %d; next in %.0f s)", name, origin, error,
                    failures, delay)


__all__ = ["SubmissionPolicy", "WitnessSubmitter"]
