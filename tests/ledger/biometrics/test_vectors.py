"""Pinned test vectors: enrolment is a deterministic function of (template, mask, secret).

Any change to the code, the permutation, the key derivation or the wire form changes these
values and breaks every helper data already printed on a card, so it must come with a new
helper data version. The inputs are built from SHAKE-256 so that any implementation can
reproduce them without this repository's synthetic generator.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ledger.biometrics import HelperData, enrol, reproduce
from ledger.biometrics.template import unpack_bits

SECRET = bytes(range(39))  # 32-byte salt, then the 56-bit biometric part
HELPER_SHA256 = "facb482ddaa403c2c206f77f8a078cf59575404ca53c4ab511a4d79f3716df9d"
COMMITMENT = "c772de4611fa8a26dce716a2c79650e73bff76eb7455e13672766ae36956cefc"


def _inputs():
    code = unpack_bits(hashlib.shake_256(b"custos test vector template").digest(256))
    mask = np.ones(2048, dtype=np.uint8)
    mask[200:500] = 0
    return code, mask


def test_enrolment_vector():
    code, mask = _inputs()
    helper, commitment = enrol(code, mask, SECRET)
    assert hashlib.sha256(helper.to_bytes()).hexdigest() == HELPER_SHA256
    assert commitment.hex() == COMMITMENT


def test_reproduction_vector():
    code, mask = _inputs()
    helper = HelperData.from_bytes(enrol(code, mask, SECRET).helper.to_bytes())
    noise = unpack_bits(hashlib.shake_256(b"custos test vector noise").digest(256))
    rescan = code ^ (noise & np.roll(noise, 1) & np.roll(noise, 2))  # ~12.5% of bits flipped
    assert 0.10 < float(np.mean(rescan != code)) < 0.15
    assert reproduce(rescan, mask, helper, expected_commitment=bytes.fromhex(COMMITMENT)) == SECRET
