#!/usr/bin/env python3
"""Seeded synthetic iris codes for testing and benchmarking biometric key binding.

No real iris images are needed (or wanted) to exercise the fuzzy commitment: what matters is
that synthetic codes have the statistics the error correction has to live with. The noise
model, and what each parameter is grounded in:

Texture (why impostors sit near HD 0.5 with a *wide* spread). Each eye is a complex Gaussian
field over 8 rings x 128 angles, smoothed along the angle with a Gaussian of width
``angular_sigma`` samples and correlated between neighbouring rings (AR(1), ``radial_rho``).
Two bits per sample are the signs of the real and imaginary parts, as in Daugman's IrisCode
phase quantisation. Smoothing makes neighbouring bits agree, so 2048 bits carry far fewer
independent ones: Daugman (2003, 2004) finds impostor Hamming distances with mean ~0.50 and
standard deviation ~0.032, i.e. a binomial with about N = 249 degrees of freedom
(N = p(1 - p) / sd^2). The defaults give N ~ 245 on jointly visible bits (``describe`` prints
the measured value). Without rotation search, Daugman's impostor mean is 0.50; with best-of-
rotations it drops to ~0.46, which this set does not model (templates arrive aligned).

Genuine rescans (why errors come in clumps). A rescan's field is ``rho * z + sqrt(1 - rho^2) *
z'`` with ``z'`` an independent field of the same texture, so bits near a zero crossing flip
first ("fragile bits", Hollingsworth, Bowyer and Flynn 2009) and flips are spatially
correlated. ``rho = cos(pi * ber)`` makes ``ber`` exactly the per-bit flip probability. The
bit error rate of a rescan against its enrolment is drawn per pair: a normal capture has
``ber = 0.045 + 0.16 * Beta(2, 5)`` (mean ~0.09), and a fraction ``poor_capture_rate`` = 3%
(blur, off-axis gaze, a different camera) is uniform on [0.15, 0.22]. Daugman's published same-eye
distributions centre near HD 0.1 with a thin tail beyond 0.2; with the undetected occlusions
below, measured genuine HDs fall in 0.05–0.25 (``describe`` prints percentiles).

Occlusion bursts and masks (why some errors are erasures and some are not). Per capture: an
upper eyelid with probability 0.85 covering up to 6 outer rings around the top of the iris,
widest at the outer ring; a lower eyelid with probability 0.5, shallower; Poisson(3) eyelash
clusters (1–3 angles x 1–3 rings) near the upper lid; up to two specular reflections (3 angles
x 2 rings). Occluded bits are replaced by random bits (eyelid texture is uncorrelated with the
iris). The mask (1 = valid) flags eyelids except for an undetected rim of 0–2 angular samples
at each boundary, half of the eyelash clusters and 95% of reflections; the rest are burst
errors the decoder must correct without knowing where they are. Typical captures leave
~15% of bits flagged, so ~77% of bits are visible in both scans of a pair.

Reproducibility: every stream comes from ``numpy.random.default_rng([seed, stream])`` (PCG64),
so the same seed gives the same data set on the same numpy version, and genuine pairs do not
change when the number of impostor probes does.

Run ``python scripts/biometric_dataset.py --pairs 2000 --seed 7`` to print the statistics, or
add ``--out FILE.npz`` to save the arrays.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace

import numpy as np

RINGS = 8
ANGLES = 128
PHASE_BITS = 2
TEMPLATE_BITS = RINGS * ANGLES * PHASE_BITS

# Independent random streams, so that each part of a data set depends only on its own counts.
STREAM_EYES = 1
STREAM_ENROL = 2
STREAM_RESCAN = 3
STREAM_STRANGERS = 4

_CHUNK = 1024


@dataclass(frozen=True)
class NoiseModel:
    """Parameters of the synthetic iris-code noise model (see the module docstring)."""

    # texture: "gaussian" (smoothed complex Gaussian field) or "gabor" (an independent model:
    # a power-law real texture seen through a quadrature Gabor filter)
    texture: str = "gaussian"
    angular_sigma: float = 3.0
    radial_rho: float = 0.5
    gabor_beta: float = 1.6
    gabor_frequency: float = 0.09
    gabor_bandwidth: float = 0.05
    # genuine bit error rates, before occlusion: normal captures and poor captures
    normal_ber_low: float = 0.045
    normal_ber_span: float = 0.16
    normal_ber_beta: tuple[float, float] = (2.0, 5.0)
    poor_capture_rate: float = 0.03
    poor_ber_range: tuple[float, float] = (0.15, 0.22)
    # enrolment captures are noisy too (each against the latent eye)
    enrol_ber_range: tuple[float, float] = (0.02, 0.08)
    # head tilt: continuous rotation uniform in +-rotation_max angular positions
    rotation_max: float = 0.0
    # pupil dilation: radial misregistration up to dilation_max rings (largest mid-iris)
    dilation_max: float = 0.0
    # occlusion
    upper_eyelid_rate: float = 0.85
    upper_eyelid_max_rings: float = 6.0
    upper_eyelid_halfwidth: tuple[float, float] = (16.0, 40.0)
    lower_eyelid_rate: float = 0.5
    lower_eyelid_max_rings: float = 3.0
    lower_eyelid_halfwidth: tuple[float, float] = (10.0, 30.0)
    eyelid_undetected_rim: int = 2
    eyelash_clusters_mean: float = 3.0
    eyelash_detect_rate: float = 0.5
    reflections_max: int = 2
    reflection_detect_rate: float = 0.95


#: the benchmark's conditions: each changes one thing about the genuine rescans
CONDITIONS: dict[str, dict] = {
    "aligned": {},
    "rotation": {"rotation_max": 8.0},
    "dilation": {"dilation_max": 0.5, "rotation_max": 2.0},
    "tail": {"poor_capture_rate": 0.15, "poor_ber_range": (0.15, 0.27), "rotation_max": 2.0},
}


def condition(name: str, texture: str = "gaussian") -> NoiseModel:
    """The noise model of one benchmark condition, on one texture model."""
    return replace(NoiseModel(texture=texture), **CONDITIONS[name])


@dataclass(frozen=True)
class Captures:
    """A batch of iris codes and masks, (count, 2048) uint8 arrays of 0/1 (mask 1 = valid)."""

    codes: np.ndarray
    masks: np.ndarray


@dataclass(frozen=True)
class GenuinePairs:
    """Enrolment captures (``enrol`` is the first; ``enrol_all`` has shape (count, K, 2048)) and
    one rescan of the same eye each, with the drawn error rates and rotations."""

    enrol: Captures
    probe: Captures
    ber: np.ndarray
    enrol_all: Captures | None = None
    rotation: np.ndarray | None = None


def _stream(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


# The latent eye lives on a radial grid FINE times finer than the code's rings, so that pupil
# dilation can move the sampled radius continuously. Ring r is read at fine row FINE*r + 1.5.
FINE = 4


def _gaussian_texture(rng: np.random.Generator, size: int, rows: int, model: NoiseModel) -> np.ndarray:
    distance = np.minimum(np.arange(ANGLES), ANGLES - np.arange(ANGLES))
    kernel = np.exp(-0.5 * (distance / model.angular_sigma) ** 2)
    kernel /= np.sqrt((kernel**2).sum())
    spectrum = np.fft.fft(kernel)
    rho = model.radial_rho ** (RINGS / rows)
    white = rng.standard_normal((size, rows, ANGLES)) + 1j * rng.standard_normal((size, rows, ANGLES))
    smooth = np.fft.ifft(np.fft.fft(white, axis=2) * spectrum, axis=2)
    out = np.empty((size, rows, ANGLES), dtype=np.complex64)
    out[:, 0] = smooth[:, 0]
    for row in range(1, rows):
        out[:, row] = rho * out[:, row - 1] + np.sqrt(1 - rho**2) * smooth[:, row]
    return out


def _gabor_texture(rng: np.random.Generator, size: int, rows: int, model: NoiseModel) -> np.ndarray:
    """An independent texture model: a real 2-D field with a power-law spectrum (1/f^beta,
    anisotropic), filtered along the angle by a one-sided Gaussian band (a quadrature Gabor
    filter), so the real and imaginary parts are Hilbert pairs, as Gabor phase codes are."""
    fr = np.fft.fftfreq(rows * 2)[:, None] * (RINGS / rows) * 2.0
    fa = np.fft.fftfreq(ANGLES)[None, :]
    radius = np.sqrt((3.0 * fr) ** 2 + fa**2) + 1.0 / ANGLES
    amplitude = radius ** (-model.gabor_beta / 2.0)
    white = rng.standard_normal((size, rows * 2, ANGLES))
    field_ = np.fft.ifft2(np.fft.fft2(white) * amplitude).real[:, :rows, :]
    band = np.exp(-0.5 * ((np.fft.fftfreq(ANGLES) - model.gabor_frequency) / model.gabor_bandwidth) ** 2)
    response = np.fft.ifft(np.fft.fft(field_, axis=2) * band, axis=2)
    scale = np.sqrt(np.mean(np.abs(response) ** 2, axis=(1, 2), keepdims=True) / 2.0)
    return (response / scale).astype(np.complex64)


def _texture(rng: np.random.Generator, count: int, model: NoiseModel, rows: int = RINGS) -> np.ndarray:
    """Textures, (count, rows, ANGLES), unit variance per part, in chunks of ``_CHUNK`` eyes."""
    make = {"gaussian": _gaussian_texture, "gabor": _gabor_texture}.get(model.texture)
    if make is None:
        raise ValueError(f"unknown texture model {model.texture!r}")
    out = np.empty((count, rows, ANGLES), dtype=np.complex64)
    for start in range(0, count, _CHUNK):
        size = min(_CHUNK, count - start)
        out[start : start + size] = make(rng, size, rows, model)
    return out


def make_eyes(
    count: int, seed: int, model: NoiseModel = NoiseModel(), stream: int = STREAM_EYES
) -> np.ndarray:
    """Latent iris textures for ``count`` distinct eyes, on the fine radial grid."""
    return _texture(_stream(seed, stream), count, model, rows=RINGS * FINE)


def _phase_bits(field_: np.ndarray) -> np.ndarray:
    bits = np.stack([field_.real > 0, field_.imag > 0], axis=-1)
    return bits.reshape(field_.shape[0], TEMPLATE_BITS).astype(np.uint8)


def _view(latent: np.ndarray, rotation: np.ndarray, dilation: np.ndarray) -> np.ndarray:
    """Sample the code's rings from the fine latent grid, turned by ``rotation`` angular
    positions (continuous: a phase shift of the angular spectrum) and with the radius warped
    by ``dilation`` rings (zero at the pupil and at the limbus, largest mid-iris)."""
    count = latent.shape[0]
    freq = np.fft.fftfreq(ANGLES)
    phase = np.exp(-2j * np.pi * freq[None, :] * rotation[:, None]).astype(np.complex64)
    # rotate the analytic-like field by shifting each part's spectrum
    real = np.fft.ifft(np.fft.fft(latent.real, axis=2) * phase[:, None, :], axis=2).real
    imag = np.fft.ifft(np.fft.fft(latent.imag, axis=2) * phase[:, None, :], axis=2).real
    turned = (real + 1j * imag).astype(np.complex64)
    centre = FINE * np.arange(RINGS) + (FINE - 1) / 2.0
    u = (np.arange(RINGS) + 0.5) / RINGS
    warp = 4.0 * u * (1.0 - u)
    pos = centre[None, :] + FINE * dilation[:, None] * warp[None, :]
    pos = np.clip(pos, 0.0, RINGS * FINE - 1.000001)
    low = np.floor(pos).astype(int)
    frac = (pos - low)[:, :, None].astype(np.float32)
    rows = np.arange(count)[:, None]
    return (1 - frac) * turned[rows, low] + frac * turned[rows, low + 1]


def _eyelid(rng, occluded, flagged, centre, max_rings, halfwidth, rim) -> None:
    depth = rng.uniform(0.0, max_rings)
    if depth <= 0.0:
        return
    width = rng.uniform(*halfwidth)
    centre = centre + rng.normal(0.0, 4.0)
    angle = np.arange(ANGLES)
    distance = np.abs(((angle - centre + ANGLES / 2) % ANGLES) - ANGLES / 2)
    for ring in range(RINGS):
        cover = (ring + 1) - (RINGS - depth)
        if cover <= 0:
            continue
        half = width * np.sqrt(min(1.0, cover / depth))
        occluded[ring, distance <= half] = True
        flagged[ring, distance <= half - rng.integers(0, rim + 1)] = True


def _occlusion(rng: np.random.Generator, model: NoiseModel) -> tuple[np.ndarray, np.ndarray]:
    """(occluded, flagged) boolean (RINGS, ANGLES) maps for one capture."""
    occluded = np.zeros((RINGS, ANGLES), dtype=bool)
    flagged = np.zeros((RINGS, ANGLES), dtype=bool)
    rim = model.eyelid_undetected_rim
    if rng.random() < model.upper_eyelid_rate:
        _eyelid(rng, occluded, flagged, ANGLES / 4, model.upper_eyelid_max_rings,
                model.upper_eyelid_halfwidth, rim)
    if rng.random() < model.lower_eyelid_rate:
        _eyelid(rng, occluded, flagged, 3 * ANGLES / 4, model.lower_eyelid_max_rings,
                model.lower_eyelid_halfwidth, rim)
    for _ in range(rng.poisson(model.eyelash_clusters_mean)):
        start_angle = int(ANGLES / 4 + rng.normal(0.0, 20.0)) % ANGLES
        start_ring = int(rng.integers(3, RINGS))
        angles = (start_angle + np.arange(rng.integers(1, 4))) % ANGLES
        rings = np.arange(start_ring, min(RINGS, start_ring + int(rng.integers(1, 4))))
        occluded[np.ix_(rings, angles)] = True
        if rng.random() < model.eyelash_detect_rate:
            flagged[np.ix_(rings, angles)] = True
    for _ in range(int(rng.integers(0, model.reflections_max + 1))):
        angles = (int(rng.integers(0, ANGLES)) + np.arange(3)) % ANGLES
        ring0 = int(rng.integers(0, RINGS - 1))
        rings = np.arange(ring0, ring0 + 2)
        occluded[np.ix_(rings, angles)] = True
        if rng.random() < model.reflection_detect_rate:
            flagged[np.ix_(rings, angles)] = True
    return occluded, flagged


def capture(
    latent: np.ndarray,
    ber: np.ndarray,
    rng: np.random.Generator,
    model: NoiseModel = NoiseModel(),
    rotation: np.ndarray | float | None = None,
    dilation: np.ndarray | float | None = None,
) -> Captures:
    """One capture of each latent eye, at per-capture bit error rate ``ber`` against the latent.

    ``rotation`` (angular positions, continuous) and ``dilation`` (rings) default to draws from
    the model (uniform in +-rotation_max, uniform in 0..dilation_max); ``ber = 0`` with both 0
    gives the latent's own bits, occluded.
    """
    count = latent.shape[0]
    ber = np.broadcast_to(np.asarray(ber, dtype=np.float64), (count,))
    if rotation is None:
        rotation = rng.uniform(-model.rotation_max, model.rotation_max, count) if model.rotation_max else 0.0
    if dilation is None:
        dilation = rng.uniform(0.0, model.dilation_max, count) if model.dilation_max else 0.0
    rotation = np.broadcast_to(np.asarray(rotation, dtype=np.float64), (count,))
    dilation = np.broadcast_to(np.asarray(dilation, dtype=np.float64), (count,))
    rho = np.cos(np.pi * ber)[:, None, None].astype(np.float32)
    view = _view(latent, rotation, dilation)
    noisy = rho * view + np.sqrt(1.0 - rho**2) * _texture(rng, count, model)
    codes = _phase_bits(noisy).reshape(count, RINGS, ANGLES, PHASE_BITS)
    del noisy, view
    masks = np.ones((count, RINGS, ANGLES, PHASE_BITS), dtype=np.uint8)
    junk = rng.integers(0, 2, size=codes.shape, dtype=np.uint8)
    for i in range(count):
        occluded, flagged = _occlusion(rng, model)
        codes[i][occluded] = junk[i][occluded]
        masks[i][flagged] = 0
    return Captures(codes.reshape(count, TEMPLATE_BITS), masks.reshape(count, TEMPLATE_BITS))


def sample_genuine_ber(
    count: int, rng: np.random.Generator, model: NoiseModel = NoiseModel()
) -> np.ndarray:
    """Per-rescan bit error rates: mostly normal captures, a few poor ones."""
    a, b = model.normal_ber_beta
    ber = model.normal_ber_low + model.normal_ber_span * rng.beta(a, b, size=count)
    poor = rng.random(count) < model.poor_capture_rate
    ber[poor] = rng.uniform(*model.poor_ber_range, size=int(poor.sum()))
    return ber


def genuine_pairs(
    count: int,
    seed: int,
    model: NoiseModel = NoiseModel(),
    ber: float | np.ndarray | None = None,
    enrol_captures: int = 1,
) -> GenuinePairs:
    """``count`` eyes, each with ``enrol_captures`` noisy enrolment captures and one rescan.

    ``ber`` fixes the rescans' bit error rate (for error-budget curves); by default it is
    drawn from the model. Enrolment captures are taken aligned up to +-1 position (the
    enrolment station asks the child to hold still); the rescan turns by the model's rotation.
    """
    latent = make_eyes(count, seed, model)
    enrol_rng = _stream(seed, STREAM_ENROL)
    shots = []
    for _ in range(enrol_captures):
        rates = enrol_rng.uniform(*model.enrol_ber_range, size=count)
        shots.append(capture(latent, rates, enrol_rng, model,
                             rotation=enrol_rng.uniform(-1.0, 1.0, count), dilation=0.0))
    rescan_rng = _stream(seed, STREAM_RESCAN)
    if ber is None:
        rates = sample_genuine_ber(count, rescan_rng, model)
    else:
        rates = np.broadcast_to(np.asarray(ber, dtype=np.float64), (count,)).copy()
    turn = (rescan_rng.uniform(-model.rotation_max, model.rotation_max, count)
            if model.rotation_max else np.zeros(count))
    probe = capture(latent, rates, rescan_rng, model, rotation=turn)
    every = Captures(np.stack([s.codes for s in shots], axis=1), np.stack([s.masks for s in shots], axis=1))
    return GenuinePairs(enrol=shots[0], probe=probe, ber=rates, enrol_all=every, rotation=turn)


def strangers(count: int, seed: int, model: NoiseModel = NoiseModel()) -> Captures:
    """Captures of ``count`` eyes that appear in no genuine pair of the same seed."""
    latent = make_eyes(count, seed, model, stream=STREAM_STRANGERS)
    rng = _stream(seed, STREAM_STRANGERS + 100)
    return capture(latent, sample_genuine_ber(count, rng, model), rng, model)


def hamming_distance(a: Captures, b: Captures) -> np.ndarray:
    """Daugman's fractional Hamming distance over bits visible in both captures, row by row."""
    visible = a.masks & b.masks
    differ = (a.codes ^ b.codes) & visible
    return differ.sum(axis=1) / np.maximum(visible.sum(axis=1), 1)


def describe(pairs: GenuinePairs, others: Captures) -> dict:
    """Summary statistics to hold against the published figures."""
    genuine = hamming_distance(pairs.enrol, pairs.probe)
    count = min(len(genuine), others.codes.shape[0])
    impostor = hamming_distance(
        Captures(pairs.enrol.codes[:count], pairs.enrol.masks[:count]),
        Captures(others.codes[:count], others.masks[:count]),
    )
    sd = float(impostor.std())
    return {
        "genuine_pairs": len(genuine),
        "genuine_hd_mean": round(float(genuine.mean()), 4),
        "genuine_hd_percentiles": {
            str(p): round(float(np.percentile(genuine, p)), 4)
            for p in (1, 5, 50, 95, 99, 99.9, 100)
        },
        "impostor_pairs": int(count),
        "impostor_hd_mean": round(float(impostor.mean()), 4),
        "impostor_hd_sd": round(sd, 4),
        "impostor_degrees_of_freedom": round(
            float(impostor.mean() * (1 - impostor.mean()) / sd**2)
        ),
        "flagged_fraction": round(float(1 - pairs.enrol.masks.mean()), 4),
        "jointly_visible_fraction": round(float((pairs.enrol.masks & pairs.probe.masks).mean()), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000, help="genuine pairs (eyes)")
    parser.add_argument("--strangers", type=int, default=2000, help="captures of other eyes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", help="write the arrays to this .npz file")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.strangers < 1:
        parser.error("--pairs and --strangers must be positive")
    pairs = genuine_pairs(args.pairs, args.seed)
    others = strangers(args.strangers, args.seed)
    stats = describe(pairs, others)
    stats["seed"] = args.seed
    stats["numpy"] = np.__version__
    stats["model"] = asdict(NoiseModel())
    if args.out:
        np.savez_compressed(
            args.out,
            enrol_codes=pairs.enrol.codes,
            enrol_masks=pairs.enrol.masks,
            probe_codes=pairs.probe.codes,
            probe_masks=pairs.probe.masks,
            ber=pairs.ber,
            stranger_codes=others.codes,
            stranger_masks=others.masks,
        )
        stats["out"] = args.out
    json.dump(stats, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
