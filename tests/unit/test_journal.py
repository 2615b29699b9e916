"""The journal's group commit: concurrent appends share fsyncs, and nothing waits long on
an append that was announced but never written."""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.storage import journal as jr
from tests.conftest import usage


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counted)
    return calls


def _commit_in_thread(j: jr.Journal, data: bytes) -> threading.Thread:
    position = j.write(data)
    t = threading.Thread(target=j.commit, args=(position,))
    t.start()
    return t


def test_leader_waits_for_an_announced_append_so_both_share_one_fsync(
        tmp_path: Path, syncs: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jr, "GROUP_WAIT", 5.0)
    j = jr.Journal(tmp_path, 1)
    j.announce()  # a second writer is preparing its append
    leader = _commit_in_thread(j, jr.COMMIT_FRAME)
    time.sleep(0.05)
    assert leader.is_alive(), "the leader synced without waiting for the announced append"
    position = j.write(jr.COMMIT_FRAME, announced=True)
    j.commit(position)
    leader.join(timeout=5)
    assert not leader.is_alive()
    assert len(syncs) == 1
    j.close()


def test_an_abandoned_announcement_releases_the_waiting_leader(
        tmp_path: Path, syncs: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jr, "GROUP_WAIT", 5.0)
    j = jr.Journal(tmp_path, 1)
    j.announce()
    leader = _commit_in_thread(j, jr.COMMIT_FRAME)
    time.sleep(0.05)
    started = time.monotonic()
    j.abandon()
    leader.join(timeout=5)
    assert not leader.is_alive()
    assert time.monotonic() - started < 1.0
    assert len(syncs) == 1
    j.close()


def test_leader_waits_at_most_group_wait_for_a_slow_announced_append(
        tmp_path: Path, syncs: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jr, "GROUP_WAIT", 0.05)
    j = jr.Journal(tmp_path, 1)
    j.announce()  # never written
    started = time.monotonic()
    j.commit(j.write(jr.COMMIT_FRAME))
    assert time.monotonic() - started < 1.0
    assert len(syncs) == 1
    j.abandon()
    j.close()


def test_refused_append_does_not_hold_back_later_commits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jr, "GROUP_WAIT", 5.0)
    with Ledger(tmp_path / "data", pricer=None) as led:
        with pytest.raises(ValueError):
            led.append(usage(input_tokens=-1), tenant="a")
        started = time.monotonic()
        led.append(usage(), tenant="a")
        assert time.monotonic() - started < 1.0


def test_concurrent_appends_share_fsyncs(tmp_path: Path, syncs: list[int]) -> None:
    with Ledger(tmp_path / "data", pricer=None) as led:
        barrier = threading.Barrier(8)

        def writer(w: int) -> None:
            barrier.wait()
            for i in range(25):
                led.append(usage(event_id=f"w{w}-{i}"), tenant="a")

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert led.size("a") == 200
    assert len(syncs) < 200


def test_large_batch_leaves_the_garbage_collector_enabled(tmp_path: Path) -> None:
    with Ledger(tmp_path / "data", pricer=None) as led:
        led.append_many([usage() for _ in range(1500)], tenant="a")
        with pytest.raises(ValueError):
            led.append_many([usage() for _ in range(1500)] + [usage(model="")], tenant="a")
    assert gc.isenabled()


def test_a_torn_batch_frame_is_cut_and_the_batches_before_it_survive(tmp_path: Path) -> None:
    path = tmp_path / "00000001.wal"
    canon = [b'{"n":%d}' % k for k in range(300)]
    digests = [b"d" * 16 if k % 2 else b"" for k in range(300)]
    whole = jr.encode_events(0, 7, digests, canon) + jr.COMMIT_FRAME
    torn = jr.encode_events(300, 8, digests, canon) + jr.COMMIT_FRAME
    path.write_bytes(whole + torn[: len(torn) // 2])
    scan = jr.scan_journal(path)
    records, committed, length = scan.records, scan.committed, scan.length
    assert committed == len(whole) < length
    assert scan.torn and scan.damage is None
    assert [r.seq for r in records] == list(range(300))
    assert [r.canonical for r in records] == canon
    assert [r.digest for r in records] == digests
    assert {r.recorded_at_us for r in records} == {7}


def test_a_batch_frame_with_a_flipped_byte_ends_the_readable_journal_as_damage(
        tmp_path: Path) -> None:
    """A whole frame that fails its checksum is damage, not a torn tail: the readable
    prefix ends before it and the damage names where it starts."""
    path = tmp_path / "00000001.wal"
    first = jr.encode_events(0, 7, [b""] * 3, [b"a", b"b", b"c"]) + jr.COMMIT_FRAME
    second = bytearray(jr.encode_events(3, 7, [b""] * 3, [b"d", b"e", b"f"]) + jr.COMMIT_FRAME)
    second[20] ^= 0x01
    path.write_bytes(first + bytes(second))
    scan = jr.scan_journal(path)
    records, committed = scan.records, scan.committed
    assert committed == len(first) and [r.canonical for r in records] == [b"a", b"b", b"c"]
    assert scan.damage is not None and scan.damage.offset == len(first)


def test_a_batch_larger_than_a_frame_is_split_into_frames_that_read_back_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jr, "MAX_FRAME", 4_096)
    canon = [b'{"n":%d,"pad":"%s"}' % (k, b"x" * (k % 97)) for k in range(500)]
    digests = [b"d" * 16 if k % 3 else b"" for k in range(500)]
    encoded = jr.encode_events(10, 7, digests, canon)
    frames = 0
    pos = 0
    while pos < len(encoded):
        length, _ = jr.FRAME.unpack_from(encoded, pos)
        assert length <= 4_096
        pos += jr.FRAME.size + length
        frames += 1
    assert frames > 10
    path = tmp_path / "00000001.wal"
    path.write_bytes(encoded + jr.COMMIT_FRAME)
    records = jr.scan_journal(path).records
    assert [r.seq for r in records] == list(range(10, 510))
    assert [r.canonical for r in records] == canon
    assert [r.digest for r in records] == digests


def test_frames_written_in_pieces_read_back_as_if_written_whole(tmp_path: Path) -> None:
    canon = [b'{"n":%d}' % k for k in range(1_000)]
    digests = [b"d" * 16 if k % 2 else b"" for k in range(1_000)]
    pieces = jr.encode_events_parts(0, 7, digests, canon)
    assert b"".join(pieces) == jr.encode_events(0, 7, digests, canon)
    j = jr.Journal(tmp_path / "journal", 1)
    many = [jr.COMMIT_FRAME] * 600  # more pieces than one writev takes
    position = j.write([*pieces, jr.COMMIT_FRAME, *many])
    j.commit(position)
    j.close()
    path = tmp_path / "journal" / "00000001.wal"
    assert position == path.stat().st_size
    scan = jr.scan_journal(path)
    assert scan.committed == scan.length
    assert [r.canonical for r in scan.records] == canon


def test_a_short_writev_is_completed_by_plain_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.writev

    def short(fd: int, pieces: list[bytes]) -> int:  # the kernel may write less than asked
        return real(fd, [pieces[0][:5]])

    monkeypatch.setattr(os, "writev", short)
    canon = [b'{"n":%d}' % k for k in range(300)]
    j = jr.Journal(tmp_path / "journal", 1)
    j.commit(j.write([*jr.encode_events_parts(0, 7, [b""] * 300, canon), jr.COMMIT_FRAME]))
    j.close()
    scan = jr.scan_journal(tmp_path / "journal" / "00000001.wal")
    assert scan.committed == scan.length and [r.canonical for r in scan.records] == canon
