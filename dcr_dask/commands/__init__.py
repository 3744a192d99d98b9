"""Subcommands of the ``dcr-dask`` command line, one module each."""
