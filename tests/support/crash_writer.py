"""A writer for the crash test: appends from several threads and prints each
acknowledgement as soon as it returns, until it is killed."""

from __future__ import annotations

import random
import sys
import threading

from ledger import Ledger


def main(path: str, run: int, seed: int) -> None:
    rng = random.Random(seed)
    led = Ledger(path, seal_rows=rng.choice([20, 60, 200]), pricer=None)
    out_lock = threading.Lock()

    def say(line: str) -> None:
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def writer(w: int) -> None:
        i = 0
        while True:
            if i % 5 == 4:  # a batch: all or nothing
                # the size is in the ids, so a reader can count; now and then a batch
                # large enough for the columnar path (one B frame, an Arrow tail part)
                n = rng.randint(260, 600) if i % 25 == 24 else rng.randint(2, 30)
                ids = [f"r{run}-w{w}-b{i}x{n}-{j}" for j in range(n)]
                led.append_many([_event(e, w) for e in ids], tenant=f"t{w % 2}")
                say("BATCH " + " ".join(ids))
            else:
                ack = led.append(_event(f"r{run}-w{w}-{i}", w), tenant=f"t{w % 2}")
                say(f"ACK {ack.event_id}")
            i += 1

    def compactor() -> None:
        while True:
            threading.Event().wait(0.05)
            led.compact()

    say("READY")  # before any writer starts, so it is always the first line
    for w in range(4):
        threading.Thread(target=writer, args=(w,), daemon=True).start()
    threading.Thread(target=compactor, daemon=True).start()
    threading.Event().wait()


def _event(event_id: str, w: int) -> dict:
    return {"event_id": event_id, "provider": "openai", "model": f"gpt-4o-{w}",
            "input_tokens": 10 + w, "output_tokens": 3, "cost": "0.0001",
            "ts": f"2025-10-0{1 + w % 3}T12:00:00Z"}


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
