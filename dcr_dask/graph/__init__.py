"""Graph: Dask over the tile (PSF matching, detection, artifacts, the fit, templates, coadds).

Lazy graphs built from the kernels of :mod:`dcr_dask.kernels`.
"""
