"""Running: the pipeline (`run`), its input checks and the Dask cluster it runs on.

(Named ``running`` rather than ``run`` so that :func:`dcr_dask.run` stays the function.)
"""
