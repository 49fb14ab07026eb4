"""Templates in the open-iris layout: read as that pipeline writes them, converted, enrolled."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from ledger.biometrics import InvalidTemplate, enrol, recover
from ledger.biometrics.open_iris import DEFAULT_SHAPE, OpenIrisError, from_open_iris, to_open_iris

from .conftest import fixed_secret


def _open_iris_layout(code: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
    """A (16, 256, 2, 2) template whose first wavelet, sampled every other row and column, is
    ``code``; the samples between and the second wavelet hold other texture bits."""
    full = rng.integers(0, 2, DEFAULT_SHAPE).astype(bool)
    full_mask = np.ones(DEFAULT_SHAPE, dtype=bool)
    full[::2, ::2, 0] = code.reshape(8, 128, 2)
    full_mask[::2, ::2, 0] = mask.reshape(8, 128, 2)
    return full, full_mask


def test_serialised_form_is_packbits_base64_of_rows_columns_wavelets_phases():
    codes = np.zeros(DEFAULT_SHAPE, dtype=bool)
    codes[0, 1, 1, 0] = True  # row 0, column 1, second wavelet, real part
    doc = to_open_iris(codes, np.ones(DEFAULT_SHAPE, dtype=bool))
    raw = base64.b64decode(doc["iris_codes"])
    assert len(raw) == 16 * 256 * 2 * 2 // 8
    # C order: index ((0 * 256 + 1) * 2 + 1) * 2 + 0 = 6 -> bit 6 of byte 0, MSB first
    assert raw[0] == 0b0000_0010 and not any(raw[1:])
    assert doc["iris_code_version"] and "array_shape" not in doc


def test_conversion_picks_the_first_wavelet_every_other_row_and_column():
    rng = np.random.default_rng(1)
    code, mask = rng.integers(0, 2, 2048).astype(np.uint8), rng.integers(0, 2, 2048).astype(np.uint8)
    full, full_mask = _open_iris_layout(code, mask, rng)
    got_code, got_mask = from_open_iris(json.loads(json.dumps(to_open_iris(full, full_mask))))
    assert np.array_equal(got_code, code) and np.array_equal(got_mask, mask)


def test_enrol_and_unlock_from_open_iris_files(pairs, tmp_path):
    rng = np.random.default_rng(2)
    files = []
    for name, code, mask in (("enrol", pairs.enrol.codes[3], pairs.enrol.masks[3]),
                             ("probe", pairs.probe.codes[3], pairs.probe.masks[3])):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(to_open_iris(*_open_iris_layout(code, mask, rng))))
        files.append(path)
    enrol_code, enrol_mask = from_open_iris(json.loads(files[0].read_text()))
    probe_code, probe_mask = from_open_iris(json.loads(files[1].read_text()))
    helper, commitment = enrol(enrol_code, enrol_mask, fixed_secret(3))
    assert recover(probe_code, probe_mask, helper, expected_commitment=commitment).secret == fixed_secret(3)


def test_other_shapes_are_read_when_the_file_names_them():
    rng = np.random.default_rng(3)
    shape = (32, 512, 1, 2)
    codes, masks = rng.integers(0, 2, shape).astype(bool), np.ones(shape, dtype=bool)
    doc = to_open_iris(codes, masks)
    assert doc["array_shape"] == list(shape)
    code, _ = from_open_iris(doc)
    assert np.array_equal(code.reshape(8, 128, 2), codes[::4, ::4, 0])


@pytest.mark.parametrize("change", [
    {"iris_codes": "not base64!"},
    {"iris_codes": base64.b64encode(b"short").decode()},
    {"mask_codes": 7},
    {"array_shape": [16, 250, 2, 2]},
    {"array_shape": [16, 256, 2, 3]},
    {"array_shape": "big"},
    {"iris_code_version": 2},
])
def test_rejects_malformed_templates(change):
    doc = to_open_iris(np.zeros(DEFAULT_SHAPE, dtype=bool), np.ones(DEFAULT_SHAPE, dtype=bool)) | change
    with pytest.raises(OpenIrisError):
        from_open_iris(doc)
    assert issubclass(OpenIrisError, InvalidTemplate)


def test_rejects_a_wavelet_the_template_does_not_have():
    doc = to_open_iris(np.zeros(DEFAULT_SHAPE, dtype=bool), np.ones(DEFAULT_SHAPE, dtype=bool))
    with pytest.raises(OpenIrisError):
        from_open_iris(doc, wavelet=2)
