"""SharpFu's networks: one architecture per file, readable top to bottom.
Loading weights lives in models/loading.py, apart from the networks."""
