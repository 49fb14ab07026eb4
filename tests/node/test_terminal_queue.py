"""The terminal's outbox on disk: nothing queued is lost, nothing leaves before a node has it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from node.client.queue import DurableQueue, QueueBusy


def _put(q: DurableQueue, n: int) -> list[bytes]:
    ids = []
    for i in range(n):
        rid = os.urandom(32)
        q.put(rid, b"signed-bytes-%d" % i)
        ids.append(rid)
    return ids


def test_queued_requests_survive_reopening_in_order(tmp_path):
    with DurableQueue(tmp_path / "q") as q:
        ids = _put(q, 5)
    with DurableQueue(tmp_path / "q") as q:
        waiting = q.waiting()
        assert [w.request_id for w in waiting] == ids
        assert [w.raw for w in waiting] == [b"signed-bytes-%d" % i for i in range(5)]
        more = _put(q, 1)  # sequence numbers continue after a reopen
        assert [w.request_id for w in q.waiting()] == ids + more


def test_acknowledge_moves_a_request_from_waiting_to_sent(tmp_path):
    with DurableQueue(tmp_path / "q") as q:
        ids = _put(q, 2)
        first = q.waiting()[0]
        q.acknowledge(first, "accepted", "http://127.0.0.1:1")
    with DurableQueue(tmp_path / "q") as q:
        assert [w.request_id for w in q.waiting()] == ids[1:]
        assert [s.request_id for s in q.sent()] == ids[:1]
        q.settle(ids[0])
        assert q.sent() == []
        assert q.counts() == {"waiting": 1, "sent": 0, "refused": 0}


def test_refused_requests_are_kept_and_not_resent(tmp_path):
    with DurableQueue(tmp_path / "q") as q:
        _put(q, 1)
        q.refuse(q.waiting()[0], "biometric-mismatch", "not signed with the child's enrolled biometric key")
        assert q.waiting() == []
        [refused] = q.refused()
        assert refused.rule == "biometric-mismatch"


def test_a_request_a_node_lost_is_queued_again(tmp_path):
    with DurableQueue(tmp_path / "q") as q:
        [rid] = _put(q, 1)
        sent = q.acknowledge(q.waiting()[0], "accepted", "n1")
        q.resend(sent)
        assert [w.request_id for w in q.waiting()] == [rid] and q.sent() == []


def test_rejects_a_second_process_on_the_same_outbox(tmp_path):
    with DurableQueue(tmp_path / "q"), pytest.raises(QueueBusy):
        DurableQueue(tmp_path / "q")


def test_sigkill_right_after_queueing_loses_nothing(tmp_path):
    """A writer process reports each request once ``put`` returned; SIGKILL it mid-stream."""
    script = textwrap.dedent(f"""
        import os, sys
        from node.client.queue import DurableQueue
        q = DurableQueue({str(tmp_path / "q")!r})
        for i in range(100000):
            rid = os.urandom(32)
            q.put(rid, b"x" * 300)
            sys.stdout.write(rid.hex() + "\\n")
            sys.stdout.flush()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd(), start_new_session=True)
    reported = []
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while len(reported) < 200 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        reported.append(bytes.fromhex(line.strip()))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert len(reported) >= 200, "the writer should have been running when it was killed"
    with DurableQueue(tmp_path / "q") as q:
        on_disk = {w.request_id for w in q.waiting()}
    missing = [r for r in reported if r not in on_disk]
    assert missing == [], f"{len(missing)} requests reported queued were lost"
