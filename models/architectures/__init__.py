"""Architecture descriptors (models/descriptor.py), one per network in
models/: how to recognise its weights, build it, and run it."""
