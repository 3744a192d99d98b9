"""Named mask planes and the bit layout of a run.

Input files name their planes with ``MP_<PLANE> = <bit>`` keywords, and two
files of one run may number them differently (docs/file-formats.md, "Mask planes").
A :class:`MaskPlanes` is one such numbering; :meth:`MaskPlanes.remap` moves a
mask array from one numbering to another. Inside a run every mask uses one
layout, built by :func:`run_layout`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs
import numpy as np

#: Planes every reader must understand by name, in afw's default bit order.
STANDARD_PLANES: tuple[str, ...] = (
    "BAD",
    "SAT",
    "INTRP",
    "CR",
    "EDGE",
    "DETECTED",
    "DETECTED_NEGATIVE",
    "SUSPECT",
    "NO_DATA",
    "CLIPPED",
    "REJECTED",
    "SENSOR_EDGE",
    "INEXACT_PSF",
    "NOT_DEBLENDED",
    "BRIGHT_OBJECT",
)

#: Per-visit mask variables that CompareWarp finds and a run stores
#: (:func:`dcr_dask.io.ingest.artifact_mask_dataset`), with the plane each sets.
ARTIFACT_VARIABLES: dict[str, str] = {"artifacts": "CLIPPED", "no_data": "NO_DATA"}

#: Largest number of planes an int32 mask can hold.
MAX_PLANES = 31

_KEY_PREFIX = "MP_"


def _frozen_bits(value: Mapping[str, int]) -> dict[str, int]:
    bits = {str(name): int(bit) for name, bit in value.items()}
    seen: dict[int, str] = {}
    for name, bit in bits.items():
        if not 0 <= bit < MAX_PLANES:
            raise ValueError(f"mask plane {name!r} has bit {bit}, outside [0, {MAX_PLANES})")
        if bit in seen:
            raise ValueError(f"mask planes {seen[bit]!r} and {name!r} share bit {bit}")
        seen[bit] = name
    return bits


@attrs.frozen
class MaskPlanes:
    """A mapping from mask-plane names to bit numbers.

    Parameters
    ----------
    bits : mapping of str to int
        Bit number (0-30) of each named plane. Two planes may not share a bit.
    """

    bits: dict[str, int] = attrs.field(converter=_frozen_bits)

    @classmethod
    def from_header(cls, header: Mapping[str, object]) -> MaskPlanes:
        """Read the ``MP_<PLANE>`` keywords of a FITS header.

        Parameters
        ----------
        header : mapping
            A FITS header (or any mapping of keyword to value).

        Returns
        -------
        MaskPlanes
            The planes the header names; empty if it names none.
        """
        bits = {}
        for key in header:
            key = str(key)
            if key.upper().startswith(_KEY_PREFIX):
                value = header[key]
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise TypeError(f"mask-plane keyword {key} must be an integer, got {value!r}")
                bits[key[len(_KEY_PREFIX) :].upper()] = int(value)
        return cls(bits)

    def to_header_cards(self) -> list[tuple[str, int, str]]:
        """Return ``(keyword, bit, comment)`` cards naming every plane.

        Returns
        -------
        list of tuple
            ``MP_<PLANE>`` cards, in bit order. Names longer than 8
            characters need FITS ``HIERARCH`` cards, which astropy writes on
            its own.
        """
        return [
            (f"{_KEY_PREFIX}{name}", bit, f"mask plane {name}")
            for name, bit in sorted(self.bits.items(), key=lambda item: item[1])
        ]

    @property
    def names(self) -> tuple[str, ...]:
        """Plane names in bit order."""
        return tuple(name for name, _ in sorted(self.bits.items(), key=lambda item: item[1]))

    def __contains__(self, name: object) -> bool:
        return name in self.bits

    def bit(self, name: str) -> int:
        """Return the bit number of one plane.

        Raises
        ------
        KeyError
            If the plane is not in this layout; the message lists those that are.
        """
        try:
            return self.bits[name]
        except KeyError:
            raise KeyError(
                f"mask plane {name!r} is not defined; known planes: {', '.join(self.names)}"
            ) from None

    def value(self, names: Iterable[str], *, missing_ok: bool = True) -> int:
        """Return the bitmask that has the bits of ``names`` set.

        Parameters
        ----------
        names : iterable of str
            Plane names.
        missing_ok : bool
            If True, names this layout does not define contribute nothing
            (a plane that no input uses cannot be set); else raise KeyError.
        """
        out = 0
        for name in names:
            if name in self.bits:
                out |= 1 << self.bits[name]
            elif not missing_ok:
                self.bit(name)
        return out

    def with_planes(self, names: Iterable[str]) -> MaskPlanes:
        """This layout with the planes of ``names`` it lacks added on the lowest free bits.

        Parameters
        ----------
        names : iterable of str
            Planes the layout must hold.

        Returns
        -------
        MaskPlanes
            ``self`` if nothing is missing; the bits of existing planes never change.

        Raises
        ------
        ValueError
            If the planes do not fit in an int32 mask.
        """
        bits = dict(self.bits)
        free = (bit for bit in range(MAX_PLANES) if bit not in bits.values())
        for name in names:
            if name not in bits:
                bit = next(free, None)
                if bit is None:
                    raise ValueError(
                        f"mask plane {name!r} does not fit: an int32 mask holds at most "
                        f"{MAX_PLANES} planes"
                    )
                bits[name] = bit
        return self if bits == self.bits else MaskPlanes(bits)

    def remap(self, mask: np.ndarray, source: MaskPlanes) -> np.ndarray:
        """Translate a mask array from the ``source`` numbering to this one.

        Parameters
        ----------
        mask : numpy.ndarray of int
            Mask pixels whose bits follow ``source``.
        source : MaskPlanes
            The numbering of ``mask``.

        Returns
        -------
        numpy.ndarray of int32
            The same planes set, numbered as in ``self``. Bits that ``source``
            does not name are dropped.

        Raises
        ------
        KeyError
            If ``source`` names a plane this layout lacks.
        """
        mask = np.asarray(mask)
        if source.bits == self.bits:
            return mask.astype(np.int32, copy=False)
        out = np.zeros(mask.shape, dtype=np.int32)
        for name, src_bit in source.bits.items():
            dst_bit = self.bit(name)
            out |= (((mask >> src_bit) & 1) << dst_bit).astype(np.int32)
        return out


def run_layout(*layouts: MaskPlanes, extra: Iterable[str] = ()) -> MaskPlanes:
    """Build one bit layout that holds every plane of the given layouts.

    The standard planes take afw's default bits (``BAD`` = 0 ... ``NO_DATA`` = 8,
    then the rest of :data:`STANDARD_PLANES`); other planes follow in
    alphabetical order.

    Parameters
    ----------
    *layouts : MaskPlanes
        Numberings found in the inputs.
    extra : iterable of str
        More planes the run needs (for example ``CLIPPED``).

    Returns
    -------
    MaskPlanes
        The run's layout.

    Raises
    ------
    ValueError
        If the planes do not fit in an int32 mask.
    """
    others = set(extra)
    for layout in layouts:
        others.update(layout.bits)
    others.difference_update(STANDARD_PLANES)
    names = list(STANDARD_PLANES) + sorted(others)
    if len(names) > MAX_PLANES:
        raise ValueError(
            f"{len(names)} mask planes do not fit in an int32 mask (at most {MAX_PLANES})"
        )
    return MaskPlanes({name: bit for bit, name in enumerate(names)})
