"""How good and how faithful a denoised image is (numpy and scipy only).

- :mod:`~napari_pinned.quality.metrics`: the paper's PSNR, SSIM, FSC and EPI against a
  reference (and, for its callers, column accuracy and the faithfulness readout).
- :mod:`~napari_pinned.quality.columns`: atom columns found and scored against the truth.
- :mod:`~napari_pinned.quality.spectra`: power spectra, and what stands above their noise
  (the floor estimator and thresholds the readout and the guard share).
- :mod:`~napari_pinned.quality.faithfulness`: the reference-free readout, on
  :mod:`~napari_pinned.quality.half_plane` (spectra, box power, floors) and
  :mod:`~napari_pinned.quality.reflections` (reflections kept, lost, invented), and
  window by window in :mod:`~napari_pinned.quality.local_faithfulness` (where).
- :mod:`~napari_pinned.quality.lattice_guard`: gives back the strong reflections a
  denoiser weakened and takes back what it invented.
- :mod:`~napari_pinned.quality.subpixel`: sub-bin peak positions.
"""
