"""Which deblurrer the catalog uses when none is named: the one that measured
best.

What counts is the mean PSNR on the deblurring benchmark's three fixed cases
(bench/deblur_quality.py: Gaussian sigma 2, linear motion 15 px, the same
with noise, on photos held out of all training). A deblurrer's numbers come
from, in this order:

* NAME.measured.json beside its weights (shipped weights in models/weights/,
  a user's checkpoint in the models folder), which
  `bench/deblur_quality.py --record` writes for every deblurrer it ran;
* the `validation` of its weights' record (what its training measured on
  the same cases and photos).

Measured deblurrers rank by that mean, above the classical unsharp mask
(rank 0). A deblurrer never measured here (a user's MIMO-UNet checkpoint
before the benchmark has run on it) ranks below every measured one and above
the unsharp mask: the authors' published numbers are on other photos and
blur, and say nothing about these cases. A measured deblurrer that is not
ahead of both the blurry input and the unsharp mask on every case it has
numbers for ranks below the unsharp mask.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("sharpfu.methods")

CASES = ("gaussian-2", "motion-15", "motion-15+noise")
SUFFIX = ".measured.json"
UNMEASURED = 0.5          # between the unsharp mask (0) and every measured deblurrer (> 1)


def measurement_path(weights: str | Path) -> Path:
    weights = Path(weights)
    return weights.with_name(weights.name + SUFFIX)


def measured(weights: str | Path | None, record: dict | None = None) -> dict | None:
    """case -> {"psnr": ..., and "blurry_input", "unsharp" when known} for
    the cases measured, or None if there are none."""
    path = measurement_path(weights) if weights is not None else None
    cases = None
    if path is not None and path.is_file():
        try:
            cases = json.loads(path.read_text()).get("cases")
        except (OSError, ValueError, AttributeError) as error:
            log.warning("ignoring %s: %s", path, error)
    if cases is None and record:
        validation = record.get("validation") or {}
        cases = {case: {"psnr": v["network"], "blurry_input": v.get("blurry_input"),
                        "unsharp": v.get("unsharp")}
                 for case, v in validation.items() if isinstance(v, dict) and "network" in v}
    if not isinstance(cases, dict):
        return None
    found = {case: {k: v for k, v in values.items() if v is not None}
             for case, values in cases.items()
             if isinstance(values, dict) and isinstance(values.get("psnr"), (int, float))}
    return found or None


def ahead_of_baselines(cases: dict) -> bool:
    """Above the blurry input and the unsharp mask on every case with them."""
    return all(case["psnr"] > max(case.get("blurry_input", float("-inf")),
                                  case.get("unsharp", float("-inf")))
               for case in cases.values())


def preference(cases: dict | None, tiebreak: float = 0.0) -> float:
    """The catalog's rank for a deblurrer (highest first)."""
    if cases is None:
        return UNMEASURED + tiebreak
    if not ahead_of_baselines(cases):
        return -1.0 + tiebreak
    if not all(case in cases for case in CASES):
        return UNMEASURED + tiebreak
    mean = sum(cases[case]["psnr"] for case in CASES) / len(CASES)
    return 1.0 + mean / 100.0 + tiebreak
