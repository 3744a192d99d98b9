"""Physics: refraction (Stone 1996), filter transmission, observing geometry and sub-bands.

No Dask, no files other than the packaged band tables, no config objects below
:mod:`dcr_dask.physics.subbands` (which still reads the config; see issue 15).
"""
