"""The errors of the cluster package: a cluster that cannot start, options that do not
go together, and a bad key or value in a cluster specification file."""

from __future__ import annotations

from pathlib import Path

from dcr_dask.errors import ConfigError, DcrDaskError


class ClusterError(DcrDaskError, RuntimeError):
    """A cluster could not be started or reached."""


class ClusterOptionError(DcrDaskError, ValueError):
    """Options of :func:`dask_client` (or ``dcr-dask run``) that do not go together."""


class ClusterSpecError(ConfigError):
    """One bad key or value in a cluster specification file.

    Parameters
    ----------
    filename : str or Path
        The YAML file.
    key : str or None
        Dotted key at fault (``adapt.maximum_jobs``); None for the file as a whole.
    value : object
        The offending value.
    message : str
        Why it is not allowed.
    missing : bool
        The key is absent (``value`` is not shown).
    """

    def __init__(
        self,
        filename: str | Path,
        key: str | None,
        value: object,
        message: str,
        *,
        missing: bool = False,
    ) -> None:
        super().__init__(key or "", value, message)
        self.filename = str(filename)
        self.key = key
        if key is None:
            text = f"{filename}: {message}"
        elif missing:
            text = f"{filename}: {key}: {message}"
        else:
            text = f"{filename}: {key} = {value!r}: {message}"
        self.args = (text,)
