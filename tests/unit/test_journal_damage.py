"""Journal damage is never a silent cut (docs/formats.md, the journal): a file is read back
as a torn tail (what a killed append leaves: recovered silently, exactly as before) or as
damage (bytes no interrupted append could leave: the directory is refused, naming the file,
the byte and what lies beyond, with a copy kept aside), and ``accept_loss`` cuts at the
damage and records the loss for ``ledger verify``."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger
from ledger.cli import cli
from ledger.core.audit import verify_directory
from ledger.errors import JournalDamageError
from ledger.storage import journal as jr
from ledger.storage.layout import DataDir
from tests.support.paths import REPO as ROOT
from tests.support.unclean import stop_uncleanly


# -- the scan, on journals built frame by frame --------------------------------------------
def _journal() -> tuple[bytes, list[int], list[int]]:
    """A journal of committed batches of every record type: its bytes, where each batch
    ends, and how many records the batches up to each end hold."""
    parts: list[bytes] = []
    ends: list[int] = []
    counts: list[int] = []
    size = records = seq = 0

    def commit(*frames: bytes, n: int) -> None:
        nonlocal size, records
        for f in (*frames, jr.COMMIT_FRAME):
            parts.append(f)
            size += len(f)
        records += n
        ends.append(size)
        counts.append(records)

    for b in range(12):
        if b % 3 == 0:  # small appends: one E frame per event
            frames = [jr.encode_event(seq + k, 7, b"d" * 16, b'{"n":%d,"pad":"%s"}'
                                      % (seq + k, b"x" * (k * 7))) for k in range(4)]
            commit(*frames, n=4)
            seq += 4
        elif b % 3 == 1:  # a batch: one B frame
            canon = [b'{"n":%d}' % (seq + k) for k in range(25)]
            commit(jr.encode_events(seq, 8, [b""] * 25, canon), n=25)
            seq += 25
        else:  # a receipt entry with its membership, and a pairing
            commit(jr.encode_receipt(seq, 9, b'{"receipt":1}', b"\1" * 16),
                   jr.encode_pair({"event_id": "e", "tenant": "t"}), n=3)
            seq += 1
    return b"".join(parts), ends, counts


JOURNAL, ENDS, COUNTS = _journal()
WHOLE = jr.scan_bytes(JOURNAL)


def test_a_whole_journal_reads_back_without_damage() -> None:
    assert WHOLE.damage is None and WHOLE.committed == WHOLE.length == len(JOURNAL)
    assert len(WHOLE.records) == COUNTS[-1]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(at=st.integers(0, len(JOURNAL) - 1), mask=st.integers(1, 255))
def test_a_changed_byte_anywhere_is_damage_or_loses_nothing(at: int, mask: int) -> None:
    """Every batch here was acknowledged: a changed byte may not make any record vanish
    unless the scan reports damage at or before it, after the records it kept."""
    data = bytearray(JOURNAL)
    data[at] ^= mask
    scan = jr.scan_bytes(bytes(data))
    if scan.damage is None:
        assert scan.records == WHOLE.records
    else:
        assert scan.committed <= scan.damage.offset <= at
        assert scan.records == WHOLE.records[:len(scan.records)]


@pytest.mark.parametrize("where", [
    0, 3, 6,  # the first frame's length and checksum
    8,  # its type byte
    ENDS[0] + 40,  # inside the payload of the second batch's frame
    len(JOURNAL) // 10, len(JOURNAL) // 2,
    ENDS[-2] + 9,  # inside the last batch's header
    len(JOURNAL) - 9, len(JOURNAL) - 5, len(JOURNAL) - 1,  # the last commit frame
])
def test_damage_at_the_start_middle_and_end_is_found(where: int) -> None:
    data = bytearray(JOURNAL)
    data[where] ^= 0x5A
    scan = jr.scan_bytes(bytes(data))
    assert scan.damage is not None
    assert scan.damage.offset <= where


def test_damage_counts_what_lies_beyond_it() -> None:
    """A bad frame is skipped by its length: the frames after it are counted exactly."""
    data = bytearray(JOURNAL)
    data[ENDS[0] + 40] ^= 1  # the payload of the second batch's one B frame (25 events)
    damage = jr.scan_bytes(bytes(data)).damage
    assert damage is not None and damage.offset == ENDS[0]
    events_after = sum(isinstance(r, jr.EventRecord) for r in WHOLE.records[COUNTS[1]:])
    assert damage.events_beyond == events_after
    assert len(damage.beyond) == COUNTS[-1] - COUNTS[1]


@pytest.mark.parametrize("cut", range(ENDS[-2] + 1, len(JOURNAL)))
def test_a_torn_last_batch_at_any_byte_is_a_torn_tail(cut: int) -> None:
    scan = jr.scan_bytes(JOURNAL[:cut])
    assert scan.damage is None and scan.torn
    assert scan.committed == ENDS[-2] and len(scan.records) == COUNTS[-2]


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(0, len(JOURNAL)))
def test_any_prefix_of_the_journal_is_a_torn_tail(cut: int) -> None:
    """A kill leaves a prefix of what was written: never damage, and every batch wholly in
    the prefix is read."""
    scan = jr.scan_bytes(JOURNAL[:cut])
    assert scan.damage is None
    whole = [n for end, n in zip(ENDS, COUNTS, strict=True) if end <= cut]
    assert len(scan.records) == (whole[-1] if whole else 0)


def test_unwritten_zero_bytes_after_the_last_batch_are_a_torn_tail() -> None:
    scan = jr.scan_bytes(JOURNAL + b"\0" * 4096)
    assert scan.damage is None and scan.committed == len(JOURNAL)


def test_a_file_closed_by_rotation_has_no_torn_tail() -> None:
    """A rotated file was made durable whole: a tail after its last commit is damage."""
    scan = jr.scan_bytes(JOURNAL[:-3], closed=True)
    assert scan.damage is not None and scan.committed == ENDS[-2]


def test_a_failed_write_is_cut_off_so_later_appends_follow_whole_frames(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk-full write stops part way; the next append must not follow its debris (that
    would read as damage inside the journal)."""
    j = jr.Journal(tmp_path, 1)
    j.commit(j.write(JOURNAL[:ENDS[0]]))
    real = os.write

    def full(fd: int, data: bytes) -> int:
        real(fd, bytes(data[:5]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError):
        j.write(JOURNAL[ENDS[0]:ENDS[1]])
    monkeypatch.setattr(os, "write", real)
    j.commit(j.write(JOURNAL[ENDS[1]:ENDS[2]]))
    j.close()
    scan = jr.scan_journal(tmp_path / jr.journal_name(1))
    assert scan.damage is None and scan.committed == scan.length
    assert len(scan.records) == COUNTS[0] + COUNTS[2] - COUNTS[1]


# -- opening a real directory ----------------------------------------------------------------
KILLED_WRITER = """
import os, sys
from ledger import Ledger
from ledger.cli import cli
from ledger.receipts.issuance import Receipts
call = {"provider": "openai", "model": "m", "input_tokens": 1, "output_tokens": 1,
        "cost": "0.01"}
led = Ledger(sys.argv[1], pricer=None, checkpoint_interval=None)
for i in range(20):
    led.append({**call, "event_id": f"a{i}"}, tenant="alpha")
    led.append({**call, "event_id": f"b{i}"}, tenant="beta")
led.append_many([{**call, "event_id": f"batch{i}"} for i in range(300)], tenant="alpha")
Receipts(led).generate(tenant="alpha", since_last_receipt=True)
for i in range(10):
    led.append({**call, "event_id": f"last{i}"}, tenant="beta")
os._exit(0)  # killed: acknowledged, never sealed
"""
EVENTS = 350


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose journal holds 350 acknowledged events and a receipt."""
    data = tmp_path_factory.mktemp("killed") / "data"
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(data)], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    return data


def _copy(killed: Path, tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    shutil.copytree(killed, data)
    (wal,) = jr.journal_files(DataDir(data).project("beta").journal)  # beta's own journal
    return data, wal[1]


def _stop_uncleanly(led: Ledger) -> None:
    """Stop as a kill would: nothing sealed, the journal left as it is."""
    stop_uncleanly(led)


def _files(data: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*"))
            if p.is_file() and p.name != "LOCK"}


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9])
def test_a_damaged_journal_is_refused_naming_the_damage_and_kept_aside(
        killed: Path, tmp_path: Path, fraction: float) -> None:
    data, wal = _copy(killed, tmp_path)
    damaged = bytearray(wal.read_bytes())
    at = int(len(damaged) * fraction)
    damaged[at] ^= 0x10
    wal.write_bytes(bytes(damaged))
    before = _files(data)
    with pytest.raises(JournalDamageError) as refused:
        Ledger(data, pricer=None)
    err = refused.value
    assert err.journal == f"projects/beta/journal/{wal.name}" and err.offset <= at
    assert err.events_beyond > 0 and f"byte {err.offset}" in str(err)
    after = _files(data)
    assert after.pop(err.kept) == bytes(damaged)  # the copy kept aside
    assert after == before  # nothing else changed, nothing deleted
    with pytest.raises(JournalDamageError):  # and it stays refused, with one copy
        Ledger(data, pricer=None)
    assert len(list(DataDir(data).project("beta").damaged_journals.iterdir())) == 1
    problems = verify_directory(data).problems
    assert "journal-damaged" in {p.kind for p in problems}


def test_accepting_the_loss_cuts_at_the_damage_and_verify_reports_it(
        killed: Path, tmp_path: Path) -> None:
    data, wal = _copy(killed, tmp_path)
    # Opened and stopped uncleanly again: the id index now names every journaled event.
    led = Ledger(data, pricer=None, checkpoint_interval=None)
    assert led.get("beta", "last9") is not None
    _stop_uncleanly(led)
    damaged = bytearray(wal.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    wal.write_bytes(bytes(damaged))
    with pytest.raises(JournalDamageError) as refused:
        Ledger(data, pricer=None)
    with Ledger(data, pricer=None, accept_loss=True) as led:
        (loss,) = led.accepted_losses
        kept_size = led.size("alpha") + led.size("beta")
        assert kept_size + refused.value.events_beyond <= EVENTS + 1
        assert kept_size < EVENTS
    assert loss["events_lost"] == refused.value.events_beyond
    assert loss["offset"] == refused.value.offset
    (line,) = DataDir(data).project("beta").journal_losses.read_bytes().splitlines()
    assert orjson.loads(line) == loss
    assert (data / loss["kept"][0]).read_bytes() == bytes(damaged)
    report = verify_directory(data)
    kinds = {p.kind for p in report.problems}
    assert {"journal-loss", "log-shorter-than-journal"} <= kinds
    with Ledger(data, pricer=None) as led:  # the cut is made: later openings are plain
        assert led.accepted_losses == []
        # A lost event is not remembered: a retry records it again, at a new seq.
        ack = led.append({"provider": "p", "model": "m", "cost": "0", "event_id": "last9"},
                         tenant="beta")
        assert ack.created and ack.seq == led.size("beta") - 1
    assert "journal-loss" in {p.kind for p in verify_directory(data).problems}


def test_damage_in_an_earlier_file_counts_and_keeps_the_files_after_it(
        killed: Path, tmp_path: Path) -> None:
    """A cut in journal file 1 drops file 2 too: the refusal counts its events, and
    accepting the loss moves it aside whole."""
    data, first = _copy(killed, tmp_path)
    led = Ledger(data, pricer=None, checkpoint_interval=None)  # appends go to file 2
    led.append_many([{"provider": "p", "model": "m", "cost": "0", "event_id": f"late{i}"}
                     for i in range(5)], tenant="beta")
    _stop_uncleanly(led)
    (_, one), (_, two) = jr.journal_files(DataDir(data).project("beta").journal)
    assert one == first and jr.scan_journal(two).records
    old_two = two.read_bytes()
    damaged = bytearray(one.read_bytes())
    damaged[-3] ^= 0x01  # the last commit frame of file 1
    one.write_bytes(bytes(damaged))
    with pytest.raises(JournalDamageError) as refused:
        Ledger(data, pricer=None)
    assert refused.value.events_beyond == 1 + 5  # file 1's last append and all of file 2
    with Ledger(data, pricer=None, accept_loss=True) as led:
        assert led.size("beta") == 29 and led.get("beta", "last8") is not None
        assert led.get("beta", "last9") is None and led.get("beta", "late0") is None
        (loss,) = led.accepted_losses
    assert len(loss["kept"]) == 2
    assert (data / loss["kept"][1]).read_bytes() == old_two  # moved aside whole
    assert not jr.scan_journal(two).records  # the new file 2 starts empty


def test_a_torn_last_frame_recovers_silently(killed: Path, tmp_path: Path) -> None:
    """What SIGKILL mid-append leaves: cuts inside the last frame (the last batch's commit
    frame) and inside its data frame; every batch before it survives, with no error."""
    whole = next(iter(jr.journal_files(DataDir(killed).project("beta").journal)))[1].read_bytes()
    last_batch = jr.scan_bytes(whole[:-len(jr.COMMIT_FRAME)]).committed
    for k, cut in enumerate((len(whole) - 1, len(whole) - 5, len(whole) - 9,
                             last_batch + 3, last_batch + 20)):
        data, wal = _copy(killed, tmp_path / str(k))
        wal.write_bytes(whole[:cut])
        with Ledger(data, pricer=None) as led:
            assert led.accepted_losses == []
            assert led.size("beta") == 29 and led.get("beta", "last8") is not None
            assert led.get("beta", "last9") is None
        assert verify_directory(data).ok


def test_ledger_flush_refuses_then_repairs_with_accept_loss(killed: Path,
                                                            tmp_path: Path) -> None:
    """The CLI's repair: without the flag, exit 1 naming the damage and no traceback;
    with it, the journal is cut, sealed, and what was lost is said on stderr."""
    data, wal = _copy(killed, tmp_path)
    damaged = bytearray(wal.read_bytes())
    damaged[len(damaged) // 3] ^= 0x02
    wal.write_bytes(bytes(damaged))
    runner = CliRunner()
    refused = runner.invoke(cli, ["--data", str(data), "ledger", "flush"])
    assert refused.exit_code == 1 and refused.exception is not None
    assert isinstance(refused.exception, SystemExit)
    assert f"journal/{wal.name} is damaged at byte" in refused.stderr
    repaired = runner.invoke(cli, ["--data", str(data), "ledger", "flush", "--accept-loss"])
    assert repaired.exit_code == 0, repaired.output
    assert f"warning: projects/beta/journal/{wal.name} was damaged at byte" in repaired.stderr
    assert "Sealed" in repaired.stdout
    assert not wal.exists()  # sealed into segments after the cut
