"""Adaptation to the user's own images (the `adapt` op): a shipped
upscaler or deblurrer is fitted, without ground truth, to pairs cut from
the user's images (pairs.py) by the training loop's steps (fit.py, with
low-rank adapters from low_rank.py on request); an adapted network that
does better on held-out pairs joins the catalog as a method of its own
(adapter.py), never a default."""
from .adapter import MAX_SAMPLE_PIXELS, AdaptedMethod, Adapter
from .fit import Settings


def smallest_sample(scale: int) -> int:
    """The shorter side, in pixels, a sample needs for an upscaler's pairs
    at `scale` (broker checks it before queueing)."""
    return Settings.patch * scale


__all__ = ["MAX_SAMPLE_PIXELS", "AdaptedMethod", "Adapter", "smallest_sample"]
