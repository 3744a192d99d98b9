"""Exceptions that tell a user which file, keyword or value is wrong."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Self, cast


class DcrDaskError(Exception):
    """Base class of every error dcr_dask raises on purpose."""


class InputError(DcrDaskError, ValueError):
    """One problem with one input file.

    Parameters
    ----------
    message : str
        What is wrong and, where it helps, what to do about it.
    filename : str or None
        The file at fault.
    keyword : str or None
        The header keyword or HDU name at fault.
    """

    def __init__(self, message: str, *, filename: str | None = None, keyword: str | None = None):
        self.filename = filename
        self.keyword = keyword
        self.message = message
        where = []
        if filename is not None:
            where.append(str(filename))
        if keyword is not None:
            where.append(keyword)
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class InputErrors(DcrDaskError, ValueError):
    """Every problem found in a set of inputs, raised together before any work starts.

    Parameters
    ----------
    errors : sequence of InputError
        The individual problems, one per file and keyword.
    """

    def __init__(self, errors: Sequence[InputError]):
        self.errors = list(errors)
        lines = [f"{len(self.errors)} problem(s) with the inputs:"]
        lines += [f"  - {error}" for error in self.errors]
        super().__init__("\n".join(lines))


class ConfigError(DcrDaskError, ValueError):
    """A configuration field holds a value it may not hold.

    Parameters
    ----------
    field : str
        Dotted name of the field (``detect.thresholdValue``).
    value : object
        The offending value.
    message : str
        Why it is not allowed.
    filename : str or None
        The configuration file the value was read from, if any; it begins the message.
    """

    def __init__(self, field: str, value: object, message: str, *, filename: str | None = None):
        self.field = field
        self.value = value
        self.reason = message
        self.filename = filename
        where = f"{filename}: " if filename is not None else ""
        super().__init__(f"{where}config field {field!r} = {value!r}: {message}")

    def in_file(self, filename: str) -> ConfigError:
        """The same problem, naming the configuration file the value came from.

        Parameters
        ----------
        filename : str
            The file.

        Returns
        -------
        ConfigError
            A new error (a :class:`ConfigErrors` of new errors for a group).
        """
        return ConfigError(self.field, self.value, self.reason, filename=filename)


class OverrideError(ConfigError):
    """A ``FIELD=VALUE`` string (the CLI's ``--set``) without a field name or a value.

    Its message is one line that quotes the string as given.

    Parameters
    ----------
    text : str
        The whole string.
    field : str
        The field it names, or the string itself when it names none.
    message : str
        What is missing and how to write it.
    """

    def __init__(self, text: str, field: str, message: str):
        super().__init__(field, text, message)
        self.args = (f"--set {text!r}: {message}",)


def raise_collected(errors: Iterable[InputError]) -> None:
    """Raise the problems found, if any.

    Parameters
    ----------
    errors : iterable of InputError
        Problems collected while checking inputs.

    Raises
    ------
    InputError
        If there is exactly one problem.
    InputErrors
        If there are several; it lists them all.
    """
    errors = list(errors)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InputErrors(errors)


class ConfigErrors(ExceptionGroup[ConfigError], ConfigError):
    """Several problems with one configuration, raised together.

    It is a :class:`~dcr_dask.errors.ConfigError`, so ``except ConfigError``
    catches it (its message lists every problem), and an ``ExceptionGroup`` of the
    individual :class:`~dcr_dask.errors.ConfigError` instances, so
    ``except* ConfigError`` handles them one by one.

    Parameters
    ----------
    errors : iterable of ConfigError
        The individual problems, each naming its dotted field and value.

    Attributes
    ----------
    errors : list of ConfigError
        The individual problems (the same objects as ``exceptions``).
    field : str
        The dotted names of the fields at fault, comma-separated.
    value : tuple
        The offending values, in the order of ``errors``.
    """

    def __new__(cls, errors: Iterable[ConfigError]) -> Self:
        errors = list(errors)
        lines = [f"{len(errors)} problems with the configuration:"]
        lines += [f"  - {error}" for error in errors]
        return super().__new__(cls, "\n".join(lines), errors)

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        # ``exceptions`` is typed as possibly holding nested groups (Self); a nested
        # ConfigErrors is a ConfigError too.
        self.errors: list[ConfigError] = list(cast(tuple[ConfigError, ...], self.exceptions))
        self.field = ", ".join(error.field for error in self.errors)
        self.value = tuple(error.value for error in self.errors)

    def __str__(self) -> str:
        return self.message

    def in_file(self, filename: str) -> ConfigErrors:
        """The same problems, each naming the configuration file its value came from."""
        return ConfigErrors(error.in_file(filename) for error in self.errors)

    # Narrower than ExceptionGroup.derive (any exceptions): ``except*`` only ever
    # passes a subset of this group's own exceptions, all of them ConfigError.
    def derive(self, excs: Iterable[ConfigError]) -> ConfigErrors:  # type: ignore[override]
        """Return a ConfigErrors of a subset of the problems (``ExceptionGroup`` API)."""
        return ConfigErrors(excs)


class OutputError(DcrDaskError, FileExistsError):
    """An output path dcr_dask refuses to write: it would replace something it did not write.

    Raised before any work starts when the output exists and was not written
    by dcr_dask (``overwrite`` replaces only dcr_dask's own stores and files),
    or when the output is, or contains, one of the inputs.

    Parameters
    ----------
    path : str or path-like
        The output path at fault.
    message : str
        Why it may not be written and what to do instead.
    """

    def __init__(self, path: object, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")

    def __str__(self) -> str:
        return str(self.args[0])


class ClusterLostError(DcrDaskError, RuntimeError):
    """The Dask scheduler or a worker went away while a stage of a run was computing.

    Raised by :func:`dcr_dask.running.pipeline.run` in place of distributed's
    ``FutureCancelledError``, ``CommClosedError`` and ``KilledWorker``; nothing
    partial is left at the output.

    Parameters
    ----------
    stage : str
        The stage that was running (``ingest``, ``fit``, ...).
    cause : BaseException
        What distributed raised.
    """

    def __init__(self, stage: str, cause: BaseException):
        self.stage = stage
        self.cause = cause
        detail = str(cause) or type(cause).__name__
        super().__init__(
            f"the Dask scheduler/worker went away during {stage}: {type(cause).__name__}: {detail}"
        )


class ResumeError(DcrDaskError, ValueError):
    """A run asked to resume (``--resume``) cannot: its inputs, configuration, options or
    dcr_dask's version differ from those of the run recorded in the work directory
    (:mod:`dcr_dask.io.checkpoint`). Raised before the cluster starts and before anything
    is written; the message names what differs."""


class Terminated(KeyboardInterrupt):
    """The process received ``SIGTERM`` (the command line raises it from a signal handler,
    so that every ``finally`` runs and no partial output is left, as on Ctrl-C)."""


class InapplicableFieldWarning(UserWarning):
    """A configuration field is set to a value that has no effect in dcr_dask.

    Emitted by :meth:`dcr_dask.config.DcrAssembleCoaddConfig.validate`, once per
    field, before any work starts. The message names the field, its value and why
    dcr_dask does not use it (``dcr_dask.config.NOT_APPLICABLE``).
    """


def expect_settings(value: object, kind: type, parameter: str, builder: str) -> None:
    """Refuse anything but a settings object, e.g. a whole config passed by old code.

    The graph takes small settings objects, never the config; this names the
    function of :mod:`dcr_dask.settings` that builds the one expected.

    Parameters
    ----------
    value : object
        What was passed.
    kind : type
        The settings class expected.
    parameter : str
        The parameter's name, for the message.
    builder : str
        The name of the function in :mod:`dcr_dask.settings` that builds a
        ``kind`` from a config.

    Raises
    ------
    TypeError
        If ``value`` is not a ``kind``.
    """
    if not isinstance(value, kind):
        raise TypeError(
            f"{parameter} must be a {kind.__name__}, not {type(value).__name__}; build one "
            f"from a config with dcr_dask.settings.{builder}(...)"
        )
