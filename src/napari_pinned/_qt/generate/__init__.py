"""The Generate dock: a synthetic STEM image of a material, with its columns."""
