"""Overlays (a transaction's writes over its block's, over the committed state) read, scan and
find the last entry of a range like the plain dictionary of what they hold, whichever layer
holds a key."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.state.view import Overlay, scan_prefix

KEYS = st.binary(min_size=1, max_size=3).map(lambda b: b"k" + b)
WRITES = st.lists(st.tuples(KEYS, st.one_of(st.none(), st.binary(min_size=1, max_size=2))), max_size=20)


class DictReader:
    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted((k, v) for k, v in self.data.items() if start <= k < stop))

    def last(self, start: bytes, stop: bytes) -> tuple[bytes, bytes] | None:
        return max(self.scan(start, stop), default=None)


@settings(max_examples=300, deadline=None)
@given(base=st.dictionaries(KEYS, st.binary(min_size=1, max_size=2), max_size=20), block=WRITES, tx=WRITES,
       merge=st.booleans(), bounds=st.lists(KEYS, min_size=2, max_size=2), prefix=st.binary(max_size=2))
def test_stacked_overlays_read_and_scan_as_the_dictionary_they_hold(base, block, tx, merge, bounds, prefix):
    model = dict(base)
    block_layer = Overlay(DictReader(dict(base)))
    for key, value in block:
        block_layer.put(key, value)
        model[key] = value
    tx_layer = Overlay(block_layer)
    for key, value in tx:
        tx_layer.put(key, value)
        model[key] = value
    top = block_layer if merge else tx_layer
    if merge:
        tx_layer.merge_into(block_layer)
    live = {k: v for k, v in model.items() if v is not None}
    start, stop = sorted(bounds)
    assert list(top.scan(start, stop)) == sorted((k, v) for k, v in live.items() if start <= k < stop)
    assert list(scan_prefix(top, b"k" + prefix)) == sorted((k, v) for k, v in live.items()
                                                         if k.startswith(b"k" + prefix))
    assert all(top.get(k) == live.get(k) for k in model)
    in_range = sorted((k, v) for k, v in live.items() if start <= k < stop)
    assert top.last(start, stop) == (in_range[-1] if in_range else None)
    for key in model:  # every key as a bound, so the greatest entry below a deletion is asked too
        below = sorted((k, v) for k, v in live.items() if k < key)
        assert top.last(b"", key) == (below[-1] if below else None)
    buffered = {k for k, _ in tx} | ({k for k, _ in block} if merge else set())
    assert [k for k, _ in top.sorted_writes()] == sorted(buffered)
