"""The physics of a STEM image: crystals projected along a zone axis, the probe, HAADF
image formation and random specimens with their ground truth (numpy and gemmi only)."""
