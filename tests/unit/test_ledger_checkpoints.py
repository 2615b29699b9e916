"""The ledger signs checkpoints of every project's log on its own: at each seal, on a
cadence, and on demand; every one verifies and matches the log."""

from __future__ import annotations

import time
from pathlib import Path

from ledger import Ledger
from ledger.storage.config import ledger_origin
from ledger.tlog.checkpoint import CheckpointStore, Verifier, verify_checkpoint
from ledger.tlog.signing import KeyRing
from tests.conftest import usage


def _latest(path: Path, tenant: str):
    return CheckpointStore(path / "checkpoints").latest(f"{ledger_origin(path)}/{tenant}")


def _verifiers(path: Path) -> list[Verifier]:
    infos = KeyRing(path / "keys", ledger_origin(path)).keys()
    return [Verifier.from_info(i) for i in infos]


def test_closing_the_ledger_checkpoints_every_grown_log(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, pricer=None) as led:
        led.append_many([usage() for _ in range(5)], tenant="a")
        led.append(usage(), tenant="b")
        roots = {t: led.root(t) for t in ("a", "b")}
    for tenant, size in (("a", 5), ("b", 1)):
        signed = _latest(ledger_dir, tenant)
        assert signed is not None
        cp = verify_checkpoint(signed.note, _verifiers(ledger_dir))
        assert (cp.size, cp.root) == (size, roots[tenant])


def test_a_log_that_did_not_grow_gets_no_new_checkpoint(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, pricer=None) as led:
        led.append(usage(), tenant="a")
    with Ledger(ledger_dir, pricer=None) as led:
        led.flush()
    store = CheckpointStore(ledger_dir / "checkpoints")
    assert len(list(store.all(f"{ledger_origin(ledger_dir)}/a"))) == 1


def test_the_cadence_checkpoints_a_grown_log_without_a_seal(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, pricer=None, checkpoint_interval=0.05) as led:
        led.append_many([usage() for _ in range(3)], tenant="a")
        deadline = time.monotonic() + 5
        while (_latest(ledger_dir, "a") is None and time.monotonic() < deadline):
            time.sleep(0.02)
        signed = _latest(ledger_dir, "a")
        assert signed is not None and signed.checkpoint.size == 3
        assert led.tree("a").size == 3  # nothing was sealed for it


def test_on_demand_checkpoint_matches_the_current_root(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, pricer=None, checkpoint_interval=None) as led:
        led.append_many([usage() for _ in range(4)], tenant="a")
        signed = led.checkpoint("a")
        assert (signed.checkpoint.size, signed.checkpoint.root) == (4, led.root("a"))
        assert led.checkpoint("a") == signed  # not grown: the same checkpoint


def test_no_cadence_means_no_checkpoint_at_close(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, pricer=None, checkpoint_interval=None) as led:
        led.append(usage(), tenant="a")
    assert _latest(ledger_dir, "a") is None
