"""The HTTP face of a witness (``llmring witness serve``): a small ASGI app answering
``POST <prefix>/add-checkpoint`` as c2sp.org/tlog-witness specifies, by
``ledger.tlog.witness.Witness.add_checkpoint`` run in a worker thread (it waits on the
origin's lock and fsyncs before answering). Any other path is 404, another method 405;
a body over ``max_body`` is 413; a witness that cannot read or write its state
(damaged file, full disk) answers 503."""

from __future__ import annotations

import logging

from anyio import to_thread
from starlette.types import Receive, Scope, Send

from ledger.errors import WitnessError
from ledger.tlog.witness import Answer, Witness

MAX_BODY = 64 * 1024  # old line, ≤ 63 proof lines and a checkpoint with its signatures
log = logging.getLogger("llmring.witness")


class WitnessApp:
    """ASGI: ``POST <prefix>/add-checkpoint`` of one witness directory."""

    def __init__(self, witness: Witness, prefix: str = "", max_body: int = MAX_BODY) -> None:
        self.witness = witness
        self.path = prefix.rstrip("/") + "/add-checkpoint"
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] != self.path:
            await _answer(send, Answer(404, f"not found; submit to POST {self.path}\n"))
            return
        if scope["method"] != "POST":
            await _answer(send, Answer(405, "use POST\n"), allow=True)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await _answer(send, Answer(413, f"the body exceeds {self.max_body} bytes\n"))
                return
            if not message.get("more_body", False):
                break
        try:
            answer = await to_thread.run_sync(self.witness.add_checkpoint, bytes(body))
        except (WitnessError, OSError) as exc:  # a damaged state file, a full disk
            log.error("add-checkpoint failed: %s", exc)
            answer = Answer(503, "the witness cannot record checkpoints now; see its log\n")
        if answer.status != 200:
            log.info("add-checkpoint %s: %s", answer.status, answer.body.strip()[:200])
        await _answer(send, answer)


async def _answer(send: Send, answer: Answer, *, allow: bool = False) -> None:
    body = answer.body.encode("utf-8")
    headers = [(b"content-type", answer.content_type.encode("ascii")),
               (b"content-length", str(len(body)).encode("ascii"))]
    if allow:
        headers.append((b"allow", b"POST"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["MAX_BODY", "WitnessApp"]
