"""Standard bands: named filters whose effective wavelength, width and curve dcr_dask knows.

A run needs its band's effective wavelength and bandwidth (and, for
``subbandShiftMode = "throughput"``, a throughput curve). Instead of giving the
numbers, a configuration can name a standard band (``band = "r"``,
``--band hsc-i``), and when it gives neither numbers, a band nor a
transmission curve, the warps' own band is looked up here.

The table covers Rubin's LSSTCam ``lsst-u`` ... ``lsst-y`` (also called by
their plain letters ``u g r i z y``), Subaru HSC's ``hsc-g``, ``hsc-r``,
``hsc-r2``, ``hsc-i``, ``hsc-i2``, ``hsc-z``, ``hsc-y`` (also by the physical
filter names HSC warps carry, ``HSC-G`` ... ``HSC-Y``) and DECam's
``decam-g``, ``decam-r``, ``decam-i``, ``decam-z``, ``decam-Y``. Names are
matched exactly (case matters: ``decam-Y``, not ``decam-y``).

The table is made from the filter curves of the ``speclite`` package by
``tests/data/make_bands.py`` and shipped in ``dcr_dask/physics/data/bands``, so speclite
is not needed at run time; ``tests/test_bands.py`` regenerates it and compares.
Each band's effective wavelength and bandwidth are those that
:func:`dcr_dask.physics.transmission.effective_wavelength_nm` and
:func:`dcr_dask.physics.transmission.bandwidth_nm` give for speclite's curve (the
throughput-weighted mean wavelength and the full width at half maximum), so a
band and a ``transmissionCurve`` of the same curve agree. The shipped curves
(``<name>.dat``, two columns: vacuum wavelength in nm, throughput) can be given
as ``transmissionCurve`` as they are; speclite's 0.1-nm LSST curves are sampled
every nm there.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import attrs

from dcr_dask.physics.transmission import Transmission, read_transmission

__all__ = [
    "BANDS_DIRECTORY",
    "StandardBand",
    "accepted_band_names",
    "known_bands_text",
    "standard_band",
    "standard_bands",
]

#: Directory of the shipped table: ``bands.json`` and one ``<name>.dat`` curve per band.
BANDS_DIRECTORY = Path(__file__).with_name("data") / "bands"


@attrs.frozen
class StandardBand:
    """One standard band of the table.

    Attributes
    ----------
    name : str
        The band's name (``lsst-r``, ``hsc-i2``, ``decam-Y``).
    aliases : tuple of str
        Other names that select it (``r``; ``HSC-I2``).
    instrument : str
        Camera and what the throughput includes.
    speclite : str
        The speclite filter the table was made from (``lsst2023-r``).
    effective_wavelength_nm : float
        Throughput-weighted mean wavelength, nm.
    bandwidth_nm : float
        Full width at half maximum of the throughput, nm.
    curve_file : str
        File name of the curve in :data:`BANDS_DIRECTORY`.
    """

    name: str
    aliases: tuple[str, ...]
    instrument: str
    speclite: str
    effective_wavelength_nm: float
    bandwidth_nm: float
    curve_file: str

    @property
    def curve_path(self) -> Path:
        """Path of the band's curve: a two-column text file usable as ``transmissionCurve``."""
        return BANDS_DIRECTORY / self.curve_file

    def transmission(self) -> Transmission:
        """Read the band's throughput curve.

        Returns
        -------
        Transmission
            Throughput against vacuum wavelength (nm).
        """
        return _read_curve(self.curve_file)


@functools.cache
def _read_curve(curve_file: str) -> Transmission:
    return read_transmission(BANDS_DIRECTORY / curve_file)


@functools.cache
def standard_bands() -> dict[str, StandardBand]:
    """Every standard band, by name, in the table's order (LSST, HSC, DECam).

    Returns
    -------
    dict of str to StandardBand
        The same dict on every call: do not modify it.
    """
    table = json.loads((BANDS_DIRECTORY / "bands.json").read_text(encoding="utf-8"))
    return {
        entry["name"]: StandardBand(
            name=entry["name"],
            aliases=tuple(entry["aliases"]),
            instrument=entry["instrument"],
            speclite=entry["speclite"],
            effective_wavelength_nm=float(entry["effective_wavelength_nm"]),
            bandwidth_nm=float(entry["bandwidth_nm"]),
            curve_file=entry["curve"],
        )
        for entry in table["bands"]
    }


@functools.cache
def _by_accepted_name() -> dict[str, StandardBand]:
    found: dict[str, StandardBand] = {}
    for band in standard_bands().values():
        for name in (band.name, *band.aliases):
            if name in found:
                raise RuntimeError(f"band name {name!r} is given twice in {BANDS_DIRECTORY}")
            found[name] = band
    return found


def accepted_band_names() -> tuple[str, ...]:
    """Every name that selects a standard band: the bands' names and their aliases.

    Returns
    -------
    tuple of str
    """
    return tuple(_by_accepted_name())


def known_bands_text() -> str:
    """The known band names, for error messages and help texts.

    Returns
    -------
    str
        ``"lsst-u (u), lsst-g (g), ..., hsc-g (HSC-G), ..., decam-Y"``.
    """
    return ", ".join(
        f"{band.name} ({', '.join(band.aliases)})" if band.aliases else band.name
        for band in standard_bands().values()
    )


def standard_band(name: str) -> StandardBand:
    """Look up a standard band by name or alias.

    Parameters
    ----------
    name : str
        A band's name (``lsst-r``) or alias (``r``, ``HSC-R2``); case matters.

    Returns
    -------
    StandardBand

    Raises
    ------
    ValueError
        For a name that is not in the table; the message lists the known ones.

    Examples
    --------
    >>> band = standard_band("r")
    >>> band.name, band.effective_wavelength_nm, band.bandwidth_nm
    ('lsst-r', 622.147, 140.025)
    """
    try:
        return _by_accepted_name()[name]
    except KeyError:
        raise ValueError(
            f"{name!r} is not a standard band; known bands (aliases): {known_bands_text()}"
        ) from None
