"""Shared fixtures: a small seeded synthetic iris set from scripts/biometric_dataset.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "biometric_dataset.py"


def _load_dataset_module():
    name = "custos_biometric_dataset"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def dataset():
    return _load_dataset_module()


@pytest.fixture(scope="session")
def pairs(dataset):
    """60 eyes, each with an enrolment capture and one rescan at the model's error rates."""
    return dataset.genuine_pairs(60, seed=11)


@pytest.fixture(scope="session")
def strangers(dataset):
    """Captures of 40 eyes that are in no pair."""
    return dataset.strangers(40, seed=11)


def fixed_secret(index: int) -> bytes:
    """Deterministic 16-byte secrets for tests (in service: new_secret())."""
    return bytes((index * 37 + j * 11) % 256 for j in range(39))


def flip_random_bits(code: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """Independent bit errors at ``rate``: a rescan without any spatial structure."""
    rng = np.random.default_rng(seed)
    return code ^ (rng.random(code.shape) < rate).astype(np.uint8)
