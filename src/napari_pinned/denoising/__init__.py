"""Denoising images, stacks, files and dask arrays with a model (tiled, streamed, on
clusters), and registering frame series.

:mod:`.denoiser` is the API (:func:`denoise`, :func:`iter_denoise`); :mod:`.tiling`
places the windows, :mod:`.engine` runs the model over them (:class:`Denoiser`),
:mod:`.dask_arrays` and :mod:`.model_spec` take the work to dask and other processes,
:mod:`.files` streams files and runs clusters, :mod:`.registration` aligns frame series.
"""
