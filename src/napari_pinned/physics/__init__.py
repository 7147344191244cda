"""The physics of a STEM image (numpy, scipy and gemmi only).

From a crystal to atomic columns: :mod:`.structure` (``Crystal``, ``Atom``), :mod:`.cif`
(reading CIF files), :mod:`.materials` (the bundled CIFs and the training / held-out
split), :mod:`.zones` (zone-axis notation), :mod:`.projection` (a zone axis → a 2D cell of
weighted columns), :mod:`.tiling` (the cell over a field of view).

From columns to an image: :mod:`.probe` (Gaussian and aberrated probes, their kernels),
:mod:`.rendering` (incoherent imaging, the memory a simulation needs) and
:mod:`.simulate` (``simulate``, ``random_simulation``).

Random specimens with ground truth: :mod:`.ranges` (what the generators draw from),
:mod:`.specimens` (``random_structure``), built from :mod:`.lattices`, :mod:`.scene` and
:mod:`.specimen_kinds`.  :mod:`.defaults` holds the simulation's defaults (no numpy: the
CLI reads them for ``--help``).
"""
