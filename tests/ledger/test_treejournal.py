"""The tree journal file: entries read back as appended, reading stops at the first entry cut
short or damaged, and cutting keeps exactly what came before a mark."""

from __future__ import annotations

import pytest

from ledger.errors import StorageError
from ledger.storage.treejournal import TreeJournal, frame


def heights(journal: TreeJournal) -> list[int]:
    return [height for height, _, _ in journal.read()]


def test_entries_read_back_as_appended_and_a_mark_cuts_back_to_before_an_entry(tmp_path):
    journal = TreeJournal(tmp_path / "j")
    assert journal.read() == [] and not journal.path.exists()
    payloads = [b"", b"x" * 70_000, bytes(range(256))]
    marks = [journal.append(h, p) for h, p in zip((5, 6, 7), payloads, strict=True)]
    assert [(h, p) for h, p, _ in journal.read()] == list(zip((5, 6, 7), payloads, strict=True))
    assert marks[0] == 0 and marks[1] == len(frame(5, b""))
    journal.cut(marks[2])
    assert heights(journal) == [5, 6]
    journal.append(7, b"again")
    assert journal.read()[-1][:2] == (7, b"again")
    journal.cut(0)
    assert journal.read() == [] and journal.path.stat().st_size == 0
    journal.close()


@pytest.mark.parametrize("damage", ["cut short", "flipped byte", "trailing garbage"])
def test_reading_stops_at_the_first_entry_cut_short_or_damaged(tmp_path, damage):
    path = tmp_path / "j"
    entries = [frame(h, bytes([h]) * 100) for h in (1, 2, 3)]
    data = bytearray(b"".join(entries))
    second = len(entries[0])
    if damage == "cut short":
        data = data[:second + len(entries[1]) - 1]
    elif damage == "flipped byte":
        data[second + 20] ^= 0x40
    else:
        data += b"\x00" * 11
    path.write_bytes(bytes(data))
    expected = [1, 2, 3] if damage == "trailing garbage" else [1]
    assert heights(TreeJournal(path)) == expected
    # each entry's offset is where the next begins: what the store cuts at
    assert [end for _, _, end in TreeJournal(path).read()] == [sum(map(len, entries[:i + 1])) for i in
                                                               range(len(expected))]


def test_a_journal_that_cannot_be_written_is_a_storage_error(tmp_path):
    journal = TreeJournal(tmp_path / "missing-dir" / "j")
    with pytest.raises(StorageError, match="cannot open the tree journal"):
        journal.append(1, b"changes")
