"""The checkpoint record of a run: which stages are done, for ``--resume``.

Every run keeps ``checkpoint.json`` in its work directory (docs/file-formats.md,
"Work directory"). It holds

* the run's fingerprint (:class:`RunFingerprint`): dcr_dask's version, the
  path, size and modification time of every input file, every configuration
  field, and the options that change the result;
* the stages whose stores in the work directory are whole (``ingest``,
  ``psf_matched``, ``static_model``, ``artifact_masks``, ``direct_coadd``),
  the DCR fit's plan of groups of subregions and the groups already written
  to its scratch store (``fit``), and the output once it is written
  (``output``).

A stage is recorded only after its store is complete, and the record is
replaced atomically (written to a hidden sibling, flushed to disk, renamed:
:func:`dcr_dask.io.atomic.atomic_file`), so a run killed at any instant
leaves either the previous record or the new one. A record that cannot be
read, or is not dcr_dask's, is never trusted: :meth:`Checkpoint.load` returns
None for it.

A run with ``resume=True`` (``--resume``) reuses the stages of the record only
when its fingerprint equals the new run's (:meth:`RunFingerprint.differences`
names what differs); it never mixes stages of different inputs or settings.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from dcr_dask._version import __version__
from dcr_dask.errors import ResumeError
from dcr_dask.io.atomic import atomic_file
from dcr_dask.io.ownership import WRITER_ATTR, check_replaceable, writer

__all__ = [
    "CHECKPOINT_NAME",
    "STAGES",
    "Checkpoint",
    "RunFingerprint",
    "file_record",
]

log = logging.getLogger(__name__)

#: Name of the record in the work directory.
CHECKPOINT_NAME = "checkpoint.json"
#: Version of the record's layout; a record of another layout is not trusted.
CHECKPOINT_FORMAT = 1
#: The stages a record may hold, in the order a run completes them.
STAGES = (
    "ingest",
    "psf_matched",
    "static_model",
    "artifact_masks",
    "direct_coadd",
    "fit",
    "output",
)


def file_record(path: str | os.PathLike[str]) -> list[Any]:
    """Absolute path, size (bytes) and modification time (ns) of a file; None for the
    last two if it cannot be read."""
    absolute = os.path.abspath(os.fspath(path))
    try:
        stat = os.stat(absolute)
    except OSError:
        return [absolute, None, None]
    return [absolute, stat.st_size, stat.st_mtime_ns]


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted field name -> ``repr`` of its value, sub-configurations (dicts) flattened."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = repr(value)
    return flat


@attrs.frozen
class RunFingerprint:
    """What the result of a run depends on, compared before a run resumes.

    Attributes
    ----------
    version : str
        dcr_dask's version.
    files : dict
        Role (``warps``, ``psf_matched``, ``template``, and the config's
        ``transmissionCurve`` and ``brightObjectMaskFile``) -> list of
        :func:`file_record` of its files, in the run's order.
    config : dict
        Dotted configuration field -> ``repr`` of its value.
    options : dict
        Options of :func:`dcr_dask.running.pipeline.run` that change the result
        (``memory_budget_bytes``: the groups of subregions follow from it).
    """

    version: str
    files: dict[str, list[list[Any]]]
    config: dict[str, str]
    options: dict[str, Any]

    @classmethod
    def of_run(
        cls,
        config: Any,
        *,
        warps: Sequence[str | os.PathLike[str]],
        psf_matched: Sequence[str | os.PathLike[str]] | None = None,
        template: str | os.PathLike[str] | None = None,
        memory_budget_bytes: float | None = None,
    ) -> RunFingerprint:
        """The fingerprint of a run with these inputs, configuration and options.

        Parameters
        ----------
        config : DcrAssembleCoaddConfig
            The run's configuration, as given.
        warps, psf_matched, template : path-like
            The input files.
        memory_budget_bytes : float, optional
            The memory budget given (None: taken from the workers).

        Returns
        -------
        RunFingerprint
        """
        files = {"warps": [file_record(p) for p in warps]}
        if psf_matched is not None:
            files["psf_matched"] = [file_record(p) for p in psf_matched]
        if template is not None:
            files["template"] = [file_record(template)]
        for field in ("transmissionCurve", "brightObjectMaskFile"):  # files named by the config
            named = getattr(config, field, None)
            if named:
                files[field] = [file_record(named)]
        budget = None if memory_budget_bytes is None else repr(float(memory_budget_bytes))
        return cls(
            version=__version__,
            files=files,
            config=_flatten(config.toDict()),
            options={"memory_budget_bytes": budget},
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (:meth:`from_json` reads it back)."""
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> RunFingerprint:
        """Read :meth:`to_json`'s form; raises KeyError or TypeError on anything else."""
        return cls(
            version=str(record["version"]),
            files={str(k): [list(f) for f in v] for k, v in dict(record["files"]).items()},
            config={str(k): str(v) for k, v in dict(record["config"]).items()},
            options=dict(record["options"]),
        )

    def differences(self, new: RunFingerprint) -> list[str]:
        """What differs between this (an earlier run's) fingerprint and ``new``.

        Parameters
        ----------
        new : RunFingerprint
            The fingerprint of the run about to start.

        Returns
        -------
        list of str
            One phrase per difference (empty when the runs are the same), e.g.
            ``config field maxNumIter is 5, the earlier run's was 3``.
        """
        found = []
        if self.version != new.version:
            found.append(f"dcr_dask is version {new.version}, the earlier run's was {self.version}")
        for role in sorted(set(self.files) | set(new.files)):
            found += _file_differences(role, self.files.get(role, []), new.files.get(role, []))
        for name in sorted(set(self.config) | set(new.config)):
            old, now = self.config.get(name), new.config.get(name)
            if old != now:
                found.append(
                    f"config field {name} is {now or 'absent'}, the earlier run's was "
                    f"{old or 'absent'}"
                )
        for name in sorted(set(self.options) | set(new.options)):
            old, now = self.options.get(name), new.options.get(name)
            if old != now:
                found.append(
                    f"option {name} is {now or 'not given'}, the earlier run's was "
                    f"{old or 'not given'}"
                )
        return found


def _file_differences(role: str, old: Iterable[list[Any]], new: Iterable[list[Any]]) -> list[str]:
    old_by_path = {record[0]: record for record in old}
    new_by_path = {record[0]: record for record in new}
    found = []
    for path in new_by_path.keys() - old_by_path.keys():
        found.append(f"{role} input {path} was not an input of the earlier run")
    for path in old_by_path.keys() - new_by_path.keys():
        found.append(f"{role} input {path} of the earlier run is not an input now")
    for path in new_by_path.keys() & old_by_path.keys():
        if new_by_path[path] != old_by_path[path]:
            found.append(
                f"{role} input {path} changed since the earlier run (size or modification time)"
            )
    if not found and list(old_by_path) != list(new_by_path):
        found.append(f"the {role} inputs are in another order than in the earlier run")
    return sorted(found)


class Checkpoint:
    """A run's record of completed stages, kept in ``<work>/checkpoint.json``.

    Create one with :meth:`start` (a new run) or :meth:`load` then
    :meth:`check` (a resumed run). Every change is written at once, atomically.

    Parameters
    ----------
    path : pathlib.Path
        The record's file.
    fingerprint : RunFingerprint
        The run's fingerprint.
    stages : dict
        Stage name -> what the stage recorded (a JSON-ready dict).
    """

    def __init__(self, path: Path, fingerprint: RunFingerprint, stages: dict[str, Any]):
        self.path = path
        self.fingerprint = fingerprint
        self.stages = stages

    @classmethod
    def start(cls, work: str | os.PathLike[str], fingerprint: RunFingerprint) -> Checkpoint:
        """Begin a new record in the work directory (replacing an earlier run's).

        Parameters
        ----------
        work : path-like
            The run's work directory (created if needed).
        fingerprint : RunFingerprint
            The run's fingerprint.

        Returns
        -------
        Checkpoint
            With no stage done, already written.

        Raises
        ------
        dcr_dask.errors.OutputError
            If ``checkpoint.json`` exists there and dcr_dask did not write it.
        """
        checkpoint = cls(Path(work) / CHECKPOINT_NAME, fingerprint, {})
        checkpoint._write()
        return checkpoint

    @classmethod
    def load(cls, work: str | os.PathLike[str]) -> Checkpoint | None:
        """Read the record of an earlier run in the work directory.

        Parameters
        ----------
        work : path-like
            The work directory.

        Returns
        -------
        Checkpoint or None
            None when there is no record, or it is not a whole record dcr_dask
            wrote in this layout (logged as a warning): it is not trusted.
        """
        path = Path(work) / CHECKPOINT_NAME
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get(WRITER_ATTR) is None or record.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"not a checkpoint record of format {CHECKPOINT_FORMAT}")
            fingerprint = RunFingerprint.from_json(record["fingerprint"])
            stages = dict(record["stages"])
            unknown = set(stages) - set(STAGES)
            if unknown:
                raise ValueError(f"unknown stages {sorted(unknown)}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("%s cannot be used to resume (%s); it is ignored", path, error)
            return None
        return cls(path, fingerprint, stages)

    def check(self, fingerprint: RunFingerprint) -> None:
        """Refuse to resume a run whose fingerprint differs from this record's.

        Parameters
        ----------
        fingerprint : RunFingerprint
            The fingerprint of the run about to resume.

        Raises
        ------
        dcr_dask.errors.ResumeError
            Naming the first difference (and how many more there are).
        """
        found = self.fingerprint.differences(fingerprint)
        if found:
            more = f" (and {len(found) - 1} more differences)" if len(found) > 1 else ""
            raise ResumeError(
                f"cannot resume from {self.path}: {found[0]}{more}; run without --resume "
                "(resume=False) to start again"
            )

    def done(self, stage: str) -> dict[str, Any] | None:
        """What ``stage`` recorded, or None if it is not done."""
        return self.stages.get(stage)

    def mark(self, stage: str, **data: Any) -> None:
        """Record that ``stage`` is done (with JSON-ready ``data``) and write the record."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
        self.stages[stage] = data
        self._write()

    def forget_from(self, stage: str) -> None:
        """Drop ``stage`` and every later one (they are made again), and write the record."""
        later = STAGES[STAGES.index(stage) :]
        if any(name in self.stages for name in later):
            self.stages = {k: v for k, v in self.stages.items() if k not in later}
            self._write()

    def _write(self) -> None:
        record = {
            WRITER_ATTR: writer(),
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint.to_json(),
            "stages": self.stages,
        }
        text = json.dumps(record, indent=1, allow_nan=True) + "\n"
        check_replaceable(self.path)
        with (
            atomic_file(self.path, overwrite=True) as tmp,
            open(tmp, "w", encoding="utf-8") as handle,
        ):
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
