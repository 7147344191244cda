"""Denoising images, stacks, files and dask arrays with a model (tiled, streamed, on
clusters), and registering frame series."""
