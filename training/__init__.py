"""How SharpFu's networks learn and how they are measured: what photos
suffer (degradations), the photos themselves, synthetic matting composites,
the one training loop with its checkpoints and weight records, and the
metrics. The training scripts (scripts/), the benchmarks (bench/) and the
server's adaptation to the user's images all use this package."""
