"""The sharpfu command line."""
