"""Deblurring a photo whose blur is unknown: estimate the kernel, then deconvolve."""
