"""The standard bands in ``dcr_dask/physics/data/bands``, made from speclite's filter curves.

dcr_dask ships the table so that its runtime does not need speclite; speclite is
a test dependency. This script writes the table; the test
``tests/test_bands.py::test_table_is_speclites`` runs :func:`build` again and
compares its output with the shipped files, so a new speclite whose curves
differ fails the test until the table is regenerated with::

    python tests/data/make_bands.py

What is made, for every band of :data:`BANDS`:

- ``<name>.dat``: the curve as two columns, vacuum wavelength in nm and
  throughput, the format of ``transmissionCurve`` (it can be given there as
  it is). Curves that speclite tabulates more finely than 1 nm (the 2023 LSST
  curves, every 0.1 nm) are sampled at every whole nm; the others are kept
  at their own wavelengths. Throughputs keep 6 significant digits.
- ``bands.json``: for each band its aliases, instrument, speclite filter,
  curve file, and its effective wavelength and bandwidth, computed by
  :func:`dcr_dask.physics.transmission.effective_wavelength_nm` and
  :func:`dcr_dask.physics.transmission.bandwidth_nm` (the way dcr_dask derives them
  from any ``transmissionCurve``) on speclite's curve at its full resolution,
  rounded to 0.001 nm.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from dcr_dask.physics.transmission import Transmission, bandwidth_nm, effective_wavelength_nm

#: Where the table lives in the package.
DIRECTORY = Path(__file__).resolve().parents[2] / "dcr_dask" / "physics" / "data" / "bands"

_LSST = "Rubin Observatory LSSTCam (total throughput with the airmass 1.2 standard atmosphere)"
_HSC = "Subaru Hyper Suprime-Cam (total throughput)"
_DECAM = "CTIO DECam (total throughput with an airmass 1.3 atmosphere)"

#: name -> (speclite filter, aliases, instrument). Plain ugrizy mean Rubin's bands;
#: HSC-* are the HSC physical-filter names that HSC warps carry. DECam's u is left
#: out: with the atmosphere its throughput rises steadily to a peak at 396 nm, so
#: its full width at half maximum (375-400 nm) misses most of the band's light.
BANDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    **{f"lsst-{b}": (f"lsst2023-{b}", (b,), _LSST) for b in "ugrizy"},
    **{
        f"hsc-{b}": (f"hsc2017-{b}", (f"HSC-{b.upper()}",), _HSC)
        for b in ("g", "r", "r2", "i", "i2", "z", "y")
    },
    **{f"decam-{b}": (f"decam2014-{b}", (), _DECAM) for b in "grizY"},
}

#: Curves sampled more finely than this are thinned to whole multiples of it, nm.
GRID_NM = 1.0


def _speclite_curve(filter_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Wavelength (nm) and throughput of one speclite filter, at speclite's resolution."""
    import speclite.filters

    response = speclite.filters.load_filter(filter_name)
    wavelength_nm = np.asarray(response.wavelength, dtype=float) / 10.0  # Angstrom -> nm
    return wavelength_nm, np.asarray(response.response, dtype=float)


def _shipped_curve(wavelength_nm: np.ndarray, throughput: np.ndarray) -> str:
    """The curve as the two-column text of a ``.dat`` file."""
    if np.diff(wavelength_nm).min() < GRID_NM * 0.99:
        grid = np.arange(
            np.ceil(wavelength_nm[0] / GRID_NM - 1e-6), np.floor(wavelength_nm[-1] / GRID_NM) + 1
        )
        throughput = np.interp(grid * GRID_NM, wavelength_nm, throughput)
        wavelength_nm = grid * GRID_NM
    lines = [f"{w:.4f} {t + 0.0:.6g}" for w, t in zip(wavelength_nm, throughput, strict=True)]
    return "\n".join(lines) + "\n"


def build() -> dict[str, str]:
    """Make the table.

    Returns
    -------
    dict of str to str
        File name (in :data:`DIRECTORY`) -> text: ``bands.json`` and one
        ``<name>.dat`` curve per band.
    """
    import speclite

    files: dict[str, str] = {}
    index = []
    for name, (filter_name, aliases, instrument) in BANDS.items():
        wavelength_nm, throughput = _speclite_curve(filter_name)
        curve = Transmission(wavelength_nm=wavelength_nm, throughput=throughput)
        header = (
            f"# dcr_dask standard band {name}: {instrument}\n"
            f"# speclite {speclite.__version__} filter {filter_name}"
            + (f", sampled every {GRID_NM:g} nm" if np.diff(wavelength_nm).min() < 0.99 else "")
            + "\n# vacuum wavelength [nm]  throughput\n"
        )
        files[f"{name}.dat"] = header + _shipped_curve(wavelength_nm, throughput)
        index.append(
            {
                "name": name,
                "aliases": list(aliases),
                "instrument": instrument,
                "speclite": filter_name,
                "curve": f"{name}.dat",
                "effective_wavelength_nm": round(effective_wavelength_nm(curve), 3),
                "bandwidth_nm": round(bandwidth_nm(curve), 3),
            }
        )
    files["bands.json"] = (
        json.dumps(
            {
                "made_by": "tests/data/make_bands.py",
                "source": f"speclite {speclite.__version__}",
                "bands": index,
            },
            indent=1,
        )
        + "\n"
    )
    return files


def main() -> int:
    """Write the table into :data:`DIRECTORY`."""
    DIRECTORY.mkdir(parents=True, exist_ok=True)
    for stale in DIRECTORY.glob("*.dat"):
        stale.unlink()
    for filename, text in build().items():
        (DIRECTORY / filename).write_text(text, encoding="utf-8")
    print(f"wrote {len(BANDS)} bands to {DIRECTORY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
