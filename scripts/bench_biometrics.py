#!/usr/bin/env python3
"""Benchmark the biometric key binding on synthetic iris codes (JSON on stdout, ``--out FILE``).

Per texture model (``gaussian``: the project's smoothed Gaussian field; ``gabor``: an
independently built power-law texture seen through a quadrature Gabor filter) and per
condition (``aligned``; ``rotation`` uniform in +-8 positions; ``dilation``; ``tail``: a heavy
genuine tail up to HD ~0.30), with three noisy enrolment captures per eye:

* FRR over ``--genuine`` pairs, each through the real ``recover`` (rotation search on, +-8);
  the genuine Hamming distance (best shift, probe vs first enrolment capture) by bin;
* false accepts over ``--impostor`` trials (enrolments x other eyes), rotation search on. An
  impostor can only be accepted if, at some shift, its normalised distance to the enrolled
  reference is within the match threshold (the decision ``recover`` applies to the decoded
  codeword), so every trial is screened over all 17 shifts with the gallery's popcount
  screen, and every trial within ``MAX_MATCH_HD + 0.05`` goes through the real ``recover``;
  a random subsample goes through ``recover`` as well. The closest impostor is reported;
* enrol / verify times, and 1:N identification time at ``--gallery`` sizes (p50 and max over
  enrolled rotated rescans and strangers), with memory per enrolment.

Secrets come from a seeded generator so that runs are reproducible; in service they come from
``os.urandom``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import biometric_dataset as ds

from ledger.biometrics import (
    BIO_BITS,
    MAX_MATCH_HD,
    MAX_SHIFT,
    SECRET_BYTES,
    Gallery,
    ReproductionFailed,
    enrol,
    recover,
)
from ledger.biometrics.fuzzy_commitment import DECODED_SHIFTS, OUTER_REDUNDANCY, RS_K

TARGET_FRR = 0.005
TARGET_IDENTIFY_MS = 1000.0
HD_BINS = ((0.0, 0.15), (0.15, 0.20), (0.20, 0.25), (0.25, 0.28), (0.28, 1.0))
CAPTURES = 3


def _ms(seconds) -> dict:
    arr = np.asarray(seconds) * 1000.0
    return {"p50": round(float(np.median(arr)), 2), "p99": round(float(np.percentile(arr, 99)), 2),
            "max": round(float(arr.max()), 2)}


def _secrets(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng([seed, 99])
    return [rng.bytes(SECRET_BYTES) for _ in range(count)]


def _enrol_all(pairs: ds.GenuinePairs, secrets):
    out, times = [], []
    for i, secret in enumerate(secrets):
        start = time.perf_counter()
        out.append(enrol(pairs.enrol_all.codes[i], pairs.enrol_all.masks[i], secret))
        times.append(time.perf_counter() - start)
    return out, times


def best_shift_hd(a: ds.Captures, b: ds.Captures) -> np.ndarray:
    from ledger.biometrics import rotate

    best = np.ones(a.codes.shape[0])
    for s in range(-MAX_SHIFT - 1, MAX_SHIFT + 2):
        best = np.minimum(best, ds.hamming_distance(a, ds.Captures(rotate(b.codes, s), rotate(b.masks, s))))
    return best


def genuine_run(model: ds.NoiseModel, count: int, seed: int) -> dict:
    pairs = ds.genuine_pairs(count, seed, model, enrol_captures=CAPTURES)
    secrets = _secrets(count, seed)
    enrolments, enrol_times = _enrol_all(pairs, secrets)
    hd = best_shift_hd(pairs.enrol, pairs.probe)
    ok = np.zeros(count, dtype=bool)
    times, shift_err = [], []
    for i in range(count):
        start = time.perf_counter()
        try:
            found = recover(pairs.probe.codes[i], pairs.probe.masks[i], enrolments[i].helper,
                            expected_commitment=enrolments[i].commitment)
        except ReproductionFailed:
            times.append(time.perf_counter() - start)
            continue
        times.append(time.perf_counter() - start)
        if found.secret != secrets[i]:
            raise SystemExit(f"pair {i}: recover returned a different secret")
        ok[i] = True
        shift_err.append(abs(found.shift - pairs.rotation[i]))
    rejected = int((~ok).sum())
    return {
        "pairs": count,
        "rejected": rejected,
        "frr": rejected / count,
        "frr_95_upper": _upper(rejected, count),
        "hd_best_shift": {"mean": round(float(hd.mean()), 4), "p99": round(float(np.percentile(hd, 99)), 4),
                          "max": round(float(hd.max()), 4)},
        "by_hd": {f"{lo:.2f}-{hi:.2f}": {"pairs": int(((hd >= lo) & (hd < hi)).sum()),
                                         "rejected": int((~ok[(hd >= lo) & (hd < hi)]).sum())}
                  for lo, hi in HD_BINS},
        "rejected_hd": sorted(round(float(x), 4) for x in hd[~ok])[:50],
        "shift_error_max": round(float(max(shift_err)), 2) if shift_err else None,
        "enrol_ms": _ms(enrol_times),
        "verify_ms": _ms(times),
    }


def _upper(failures: int, trials: int) -> float:
    """95% upper confidence bound (Clopper-Pearson for 0, normal approximation otherwise)."""
    if failures == 0:
        return round(3.0 / trials, 7)
    p = failures / trials
    return round(p + 1.96 * math.sqrt(p * (1 - p) / trials), 6)


def impostor_run(model: ds.NoiseModel, trials: int, probes: int, seed: int, real_checks: int) -> dict:
    enrolled = math.ceil(trials / probes)
    pairs = ds.genuine_pairs(enrolled, seed + 500, model, enrol_captures=CAPTURES)
    others = ds.strangers(probes, seed + 500, model)
    secrets = _secrets(enrolled, seed + 500)
    gallery = Gallery(shortlist=1)
    enrolments, _ = _enrol_all(pairs, secrets)
    for i, e in enumerate(enrolments):
        gallery.put(i.to_bytes(4, "big"), e.helper, secrets[i], bytes(32))
    start = time.perf_counter()
    closest = np.empty((probes, enrolled), dtype=np.float32)
    for j in range(probes):
        closest[j], _ = gallery.screen(others.codes[j], others.masks[j], MAX_SHIFT)
    screened_s = time.perf_counter() - start
    closest = closest[:, :enrolled]
    done = probes * enrolled
    near = np.argwhere(closest <= MAX_MATCH_HD + 0.05)
    accepts = 0
    for j, i in near:
        try:
            recover(others.codes[j], others.masks[j], enrolments[i].helper)
            accepts += 1
        except ReproductionFailed:
            pass
    rng = np.random.default_rng(seed)
    sample_accepts, reject_times = 0, []
    for _ in range(real_checks):
        j, i = int(rng.integers(probes)), int(rng.integers(enrolled))
        begin = time.perf_counter()
        try:
            recover(others.codes[j], others.masks[j], enrolments[i].helper)
            sample_accepts += 1
        except ReproductionFailed:
            pass
        reject_times.append(time.perf_counter() - begin)
    return {
        "trials": done,
        "shifts_per_trial": 2 * MAX_SHIFT + 1,
        "false_accepts": accepts + sample_accepts,
        "closest_impostor_normalised_hd": round(float(closest.min()), 4),
        "trials_within_match_hd_plus_0.05": len(near),
        "max_match_hd": MAX_MATCH_HD,
        "screen_seconds": round(screened_s, 1),
        "real_decoder_trials": real_checks + len(near),
        "reject_ms": _ms(reject_times) if reject_times else None,
    }


def identification_run(size: int, queries: int, seed: int) -> dict:
    """1:N over ``size`` enrolments (one capture each, to keep set-up short), probed with
    rotated rescans of enrolled eyes and with strangers."""
    model = ds.condition("rotation")
    gallery = Gallery()
    rng = np.random.default_rng([seed, 5])
    chunk = 5000
    start = time.perf_counter()
    probes = None
    for base in range(0, size, chunk):
        n = min(chunk, size - base)
        pairs = ds.genuine_pairs(n, seed * 1000 + base, model)
        for i in range(n):
            secret = rng.bytes(SECRET_BYTES)
            e = enrol(pairs.enrol.codes[i], pairs.enrol.masks[i], secret)
            gallery.put((base + i).to_bytes(4, "big"), e.helper, secret, rng.bytes(32))
        if probes is None:
            probes = pairs
    build = time.perf_counter() - start
    others = ds.strangers(queries, seed + 7, model)
    hits = wrong = 0
    times = []
    for i in range(min(queries, probes.probe.codes.shape[0])):
        begin = time.perf_counter()
        found = gallery.identify(probes.probe.codes[i], probes.probe.masks[i])
        times.append(time.perf_counter() - begin)
        hits += found == i.to_bytes(4, "big")
        wrong += found is not None and found != i.to_bytes(4, "big")
    stranger_none = 0
    for j in range(queries):
        begin = time.perf_counter()
        stranger_none += gallery.identify(others.codes[j], others.masks[j]) is None
        times.append(time.perf_counter() - begin)
    return {
        "gallery_size": size,
        "build_seconds": round(build, 1),
        "enrolled_queries": queries,
        "identified": int(hits),
        "wrong_identity": int(wrong),
        "stranger_queries": queries,
        "strangers_unmatched": stranger_none,
        "identify_ms": _ms(times),
        "bytes_per_enrolment": round(gallery.memory_bytes() / size),
        "threads": gallery.threads,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark biometric key binding.")
    parser.add_argument("--genuine", type=int, default=10_000, help="genuine pairs per condition")
    parser.add_argument("--impostor", type=int, default=1_000_000, help="impostor trials per texture")
    parser.add_argument("--probe-eyes", type=int, default=1000, help="impostor probe eyes")
    parser.add_argument("--real-impostor-checks", type=int, default=5000)
    parser.add_argument("--gallery", type=int, action="append", help="1:N gallery sizes (default 10000, 100000)")
    parser.add_argument("--queries", type=int, default=20, help="1:N queries of each kind")
    parser.add_argument("--textures", default="gaussian,gabor")
    parser.add_argument("--conditions", default=",".join(ds.CONDITIONS))
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report: dict = {
        "scheme": {
            "template_bits": 2048,
            "enrolment_captures": CAPTURES,
            "inner_code": "biorthogonal Hadamard [64,7,32], soft ML decoding",
            "outer_code": f"Reed-Solomon (32,{RS_K}) over GF(2^7), GMD, 2e + s <= {OUTER_REDUNDANCY}",
            "biometric_bits": BIO_BITS,
            "salt_bits": 256,
            "rotation_search": f"+-{MAX_SHIFT} positions, {DECODED_SHIFTS} best decoded",
            "max_match_hd": MAX_MATCH_HD,
            "security_against_card_holder_bits": 128,
        },
        "conditions": {},
        "impostor": {},
    }
    frr_ok = fa_ok = True
    for texture in args.textures.split(","):
        for name in args.conditions.split(","):
            result = genuine_run(ds.condition(name, texture), args.genuine, args.seed)
            report["conditions"][f"{texture}/{name}"] = result
            frr_ok &= result["frr"] <= TARGET_FRR
            print(f"{texture}/{name}: FRR {result['frr']:.4f}", file=sys.stderr)
        imp = impostor_run(ds.condition("rotation", texture), args.impostor, args.probe_eyes, args.seed,
                           args.real_impostor_checks)
        report["impostor"][texture] = imp
        fa_ok &= imp["false_accepts"] == 0
        print(f"{texture}: {imp['false_accepts']} false accepts in {imp['trials']}", file=sys.stderr)
    report["identification"] = []
    id_ok = True
    for size in args.gallery or [10_000, 100_000]:
        result = identification_run(size, args.queries, args.seed)
        report["identification"].append(result)
        id_ok &= result["identify_ms"]["max"] < TARGET_IDENTIFY_MS and result["wrong_identity"] == 0
        print(f"1:N {size}: {result['identify_ms']}", file=sys.stderr)
    report["targets"] = {"frr_at_most": TARGET_FRR, "false_accepts": 0, "identify_max_ms_below": TARGET_IDENTIFY_MS,
                         "met": bool(frr_ok and fa_ok and id_ok)}
    report["environment"] = {"numpy": np.__version__, "python": sys.version.split()[0]}
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if report["targets"]["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
