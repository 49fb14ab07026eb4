"""The derived indexes (``x/...``) rebuilt from the records they index.

The state root does not cover the derived indexes (:mod:`ledger.state.records`): they are
functions of a child's records, kept so that rules and reads find records without scanning. A
node that starts from a snapshot receives the authenticated records only and rebuilds these
from them; what it builds must be exactly what a node that executed every block holds, or the
two would apply later blocks differently (``tests/ledger/state/test_derived.py`` compares them
on a chain that exercises every rule that writes an index).

Every derived entry belongs to one child, so they are rebuilt child by child:

* ``x/ct/<tag>``: the child's identity id;
* ``x/cm/<commitment>``: each biometric commitment of the child, active if it is the identity's;
* ``x/gw/<guardian><id>``: each guardian the identity names;
* ``x/ret/<day><id>``: the day the child's records fall due for erasure, if any;
* ``x/rq/<id>``: each request and consent of the child;
* ``x/exp/<deadline><id><request>``: each request still pending;
* ``x/pd/<id><request>``: each request still pending whose marker is not among the child's
  records (made under protocol 5 on; one made before stays a record until it closes);
* ``x/alert/<height><id><request>``: each alert, at the height its request closed.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.encoding import decode
from ledger.errors import DecodeError
from ledger.privacy.tags import child_tag
from ledger.state.records import (
    ALERT,
    COMMITMENT_INDEX,
    IDENTITY_RECORD,
    NIL,
    PENDING,
    REQUEST,
    CommitmentIndex,
    Request,
    k_alert,
    k_alert_at,
    k_child,
    k_child_commitment,
    k_child_tag,
    k_commitment,
    k_consent,
    k_expiry,
    k_identity,
    k_pending,
    k_pending_index,
    k_request,
    k_retention,
    k_subject,
    k_ward,
)


def child_indexes(identity: bytes, records: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The derived entries of one child from all of its records (keys under ``c/<identity>``).

    Raises :class:`DecodeError` if a record does not decode or is not the child's."""
    prefix = k_child(identity)
    held = dict(records)
    if not all(key.startswith(prefix) for key in held):
        raise DecodeError("a record of another child among the child's records")
    out: dict[bytes, bytes] = {k_child_tag(child_tag(identity)): identity}
    raw = held.get(k_identity(identity))
    current = None
    if raw is not None:
        record = IDENTITY_RECORD.decode(raw)
        current = record.commitment
        for guardian in record.guardians:
            out[k_ward(guardian, identity)] = NIL
        if record.erase_day:
            out[k_retention(record.erase_day, identity)] = NIL
    requests: dict[bytes, tuple[str, int, int | None]] = {}
    commitments, requests_at, consents_at, alerts_at = (k_child_commitment(identity), k_request(identity),
                                                        k_consent(identity), k_alert(identity))
    for key, value in held.items():
        if key.startswith(commitments):
            commitment = key[len(commitments):]
            out[k_commitment(commitment)] = COMMITMENT_INDEX.encode(CommitmentIndex(identity, commitment == current))
        elif key.startswith(requests_at):
            rid = key[len(requests_at):]
            status, deadline, _closed = requests[rid] = _request_fields(value)
            out[k_subject(rid)] = identity
            if status == PENDING:
                out[k_expiry(deadline, identity, rid)] = NIL
                if k_pending(identity, rid) not in held:
                    out[k_pending_index(identity, rid)] = NIL
        elif key.startswith(consents_at):
            out[k_subject(key[len(consents_at):])] = identity
    for key, value in held.items():
        if key.startswith(alerts_at):
            rid = key[len(alerts_at):]
            ALERT.decode(value)
            fields = requests.get(rid)
            if fields is None or fields[2] is None:
                raise DecodeError("an alert without its closed request", "alert")
            out[k_alert_at(fields[2], identity, rid)] = NIL
    return out


_REQUEST_FIELDS = frozenset(REQUEST.spec)


def _request_fields(value: bytes) -> tuple[str, int, int | None]:
    """(status, deadline, closed height) of a request record. The records come proven by the
    state root, so they are records the state machine wrote: this reads the three fields the
    indexes need without checking every other one (a node joining a chain of many crossings
    decodes one per request), and still refuses a record that is not a request's map. For the
    same reason it does not check the record's canonical form: a record is kept only once its
    hash matches the one the state root proves, and only the bytes the state machine wrote can."""
    raw = decode(value, canonical=False)
    if type(raw) is not dict or raw.keys() != _REQUEST_FIELDS:
        return _fields_of(REQUEST.decode(value))  # raises, saying what is wrong
    status, deadline, closed = raw["status"], raw["deadline"], raw["closed_height"]
    if (type(status) is not str or type(deadline) is not int
            or not (closed is None or type(closed) is int)):
        return _fields_of(REQUEST.decode(value))
    return status, deadline, closed


def _fields_of(request: Request) -> tuple[str, int, int | None]:
    return request.status, request.deadline, request.closed_height
