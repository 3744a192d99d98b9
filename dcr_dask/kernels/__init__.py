"""Kernels: NumPy/SciPy on in-memory blocks; no Dask, no files, no config.

Every kernel is tested on small arrays without a cluster; the graph layer
(:mod:`dcr_dask.graph`) maps them over the tile.
"""
