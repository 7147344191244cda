"""Plumbing every other package uses: jobs, memory, devices, units, intensity conventions
and argument checks.  Imports nothing from napari-pinned above :mod:`napari_pinned.settings`."""
