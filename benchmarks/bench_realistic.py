"""Accuracy on realistic, independently rendered data, next to the package's own simulator.

For every seed and renderer, a tile is made, every variant of :data:`VARIANTS`
fits it through ``dcr_dask.running.pipeline.run`` on one local Dask cluster, and the
held-out visits' DCR-matched templates (``dcr_dask.running.templates.matched_template``)
are scored against the held-out noise-free truth (benchmarks/_realistic_scoring.py):

- ``bright``, ``faint``, ``all``: RMS centroid error of isolated stars in the
  templates, divided by the plain coadd's (lower is better). Classes are cuts in
  a star's single-visit S/N (optimal filter, sky + source noise), equivalent to
  g < 18.3 (bright), 19 <= g <= 21.5 (faint) and g <= 21.5 (all: both, and the
  stars between them) on the default GalSim g tile;
- ``tmpl rms``: RMS of (template - truth) over held-out source pixels (> 5 sky
  sigmas), relative to the plain coadd's. Neither template is matched to the
  held-out visit's PSF, so in r, where DCR is small, this mostly measures the
  PSF mismatch;
- ``diff rms``: the same RMS of what image differencing leaves: each template
  convolved with the kernel that best matches it to the held-out truth
  (``dcr_dask.truth.matched_difference``, 11 px, one per visit) and subtracted,
  relative to the plain coadd's: what a difference image sees (PSF mismatch
  absorbed, DCR that differs from source to source not);
- ``streak``, ``cosmic``: share of the streak's and the cosmic rays' truth pixels
  flagged in the output store's ``artifacts`` (visit, y, x);
- ``bright clip``: share of bright source pixels (truth > 10 sky sigmas, > 10 px
  from any artifact) flagged there;
- ``fit s``: the fit stage's seconds (``timings_s["fit_s"]``);
- the row ``plain coadd noise``: for each star class, the share of the plain
  coadd's centroid error that its noise alone causes (its centroids, with the
  truth artifacts left out, against those of the noise-free warps' plain
  coadd; ``noise_share``). A
  template of the same visits with perfect centroids but the plain coadd's
  noise would score this ratio: the part of ``bright`` and ``faint`` that the
  S/N of the visits sets, not the model;
- the row ``plain, no artifacts``: the plain coadd with the truth artifacts
  left out, scored like a template against the plain coadd (which keeps
  them): what perfect artifact rejection alone gives, with no DCR correction.
  A DCR template is worth its cost where it beats this row, not only 1.

Renderers: ``galsim`` (tests/galsim_tile.py: Kolmogorov chromatic PSFs, GalSim's
refraction, blackbody stars, CWW galaxies, no DETECTED plane by default) and
``sim`` (``dcr_dask.simulate.realistic_spec``: Moffat PSFs with chromatic seeing,
faint stars, no DETECTED plane except in the ``DETECTED on`` variant). Variants:
the defaults, the ``reference`` and ``many-artifacts`` presets
(``dcr_dask.config.PRESETS``), the same warps with a DETECTED plane, a static
template given (``--template``: the plain coadd), the truth ceiling
(noise-free, artifact-free warps, defaults), the artifacts kept in the fit
(``clipped in fit``: the reference's and the former defaults' way), the scene
rendered with its noise but without the streak and the cosmic rays (``no
artifacts``: what the artifacts cost the fit), the defaults with three
sub-bands, then also with the reference's iteration limits (``minNumIter``,
``maxNumIter`` None, ``convergenceThreshold`` 0.001), and the frequency
regularization's clamp on the smoothed ratio (``frequencyClamp="smoothed"``) and
with a tighter factor (``regularizeModelFrequency=2``), each clamp, and the smoothed
clamp with only the colour sharpened (``frequencyClamp="smoothedColour"``).

``--max-airmass A`` squeezes the presets' airmasses (fitted and held out) from
``[1.01, top]`` into ``[1.01, A]`` (``squeeze_airmasses``): the same visits with less DCR, where the
sub-bands are harder to separate and a template must still not be worse than
the plain coadd.

Run: ``python benchmarks/bench_realistic.py [--renderer both] [--seeds 1 2 3 4 5]
[--size 256] [--band g] [--variants ...] [--workers 2] [--max-airmass A]
[--seeing LO HI]``; ``--seeing 0.45 0.6`` renders the GalSim tiles in that seeing
range (FWHM at 500 nm, arcsec; the preset's is 0.6-1.0).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

import attrs
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import galsim_tile as gt
from _common import machine_summary, warp_template
from _realistic_scoring import (
    Truth,
    artifact_scores,
    centroid_rms,
    difference_rms,
    noise_share,
    source_rms,
    star_classes,
)

from dcr_dask.config import PRESETS, DcrAssembleCoaddConfig
from dcr_dask.graph.coadd import plain_coadd
from dcr_dask.io.warps import open_warps
from dcr_dask.masks import MaskPlanes
from dcr_dask.running.cluster import dask_client
from dcr_dask.running.pipeline import run
from dcr_dask.simulate import realistic_spec, simulate_tile, write_simulation

BAD_PLANES = ["NO_DATA", "BAD", "SAT"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One pipeline configuration: config overrides, which warps, and whether a template is given.

    ``inputs``: ``"base"`` (the warps, no DETECTED plane), ``"detected"`` (the same
    warps with a DETECTED plane), ``"noise_free"`` (noise-free, artifact-free warps)
    or ``"no_artifacts"`` (the scene with noise but no streak or cosmic ray, rendered
    only when a chosen variant needs it).
    """

    config: dict = dataclasses.field(default_factory=dict)
    inputs: str = "base"
    static_template: bool = False


#: The compared variants (the plain coadd is always computed, as the reference).
VARIANTS = {
    "defaults": Variant(),
    "reference preset": Variant(config=PRESETS["reference"]()),
    "many-artifacts preset": Variant(config=PRESETS["many-artifacts"]()),
    "DETECTED on": Variant(inputs="detected"),
    "given template": Variant(static_template=True),
    "truth ceiling": Variant(inputs="noise_free"),
    # the artifacts (CLIPPED) kept in the DCR fit, as the reference and the former defaults
    "clipped in fit": Variant(config={"excludeClippedFromFit": False}),
    # the same scene rendered with noise and without artifacts: what the artifacts cost
    "no artifacts": Variant(inputs="no_artifacts"),
    # the defaults without the direct warps' cosmic-ray search (CompareWarp alone)
    "no cosmic-ray search": Variant(config={"doFindCosmicRays": False}),
    # the defaults' fit with the reference's sub-bands and iteration limits, one step at a time
    "three sub-bands": Variant(config={"dcrNumSubfilters": 3}),
    # how the frequency regularization bounds the colours (frequencyClamp), at two factors
    "smoothed clamp": Variant(config={"frequencyClamp": "smoothed"}),
    # the same clamp with the sharpening of the colour only (the mean ratio left smooth)
    "smoothed colour clamp": Variant(config={"frequencyClamp": "smoothedColour"}),
    "frequency factor 2": Variant(config={"regularizeModelFrequency": 2.0}),
    "smoothed clamp, factor 2": Variant(
        config={"frequencyClamp": "smoothed", "regularizeModelFrequency": 2.0}
    ),
    # one model PSF for every visit's template (psfForwardModel="none": the reference's, the
    # default until session 38; the defaults widen each visit's template to its own PSF)
    "psf none": Variant(config={"psfForwardModel": "none"}),
    "psf none, ceiling": Variant(config={"psfForwardModel": "none"}, inputs="noise_free"),
    # the model at the sharpest visit's PSF (psfModelQuantile = 0, the default until session 37)
    "psf gaussian q0": Variant(config={"psfForwardModel": "gaussian", "psfModelQuantile": 0.0}),
    # the defaults stopped at 30 iterations (minNumIter's default): what the fit's last
    # iterations buy with psfForwardModel="gaussian", which often runs to maxNumIter (60)
    "30 iterations": Variant(config={"maxNumIter": 30}),
    "reference limits": Variant(
        config={
            "dcrNumSubfilters": 3,
            "minNumIter": None,
            "maxNumIter": None,
            "convergenceThreshold": 0.001,
        }
    ),
}
#: The summary row of the plain coadd's centroid error from its noise alone (``noise_share``).
NOISE_ROW = "plain coadd noise"
#: The row of the plain coadd with the truth artifacts left out, scored like a template: what
#: perfect artifact rejection alone gives, without any DCR correction.
CLEAN_ROW = "plain, no artifacts"
COLUMNS = (
    "bright",
    "faint",
    "all",
    "tmpl rms",
    "diff rms",
    "streak",
    "cosmic",
    "bright clip",
    "fit s",
)


@dataclasses.dataclass(frozen=True)
class Case:
    """One rendered tile: warp files per input kind, held-out files, truth, band."""

    warps: dict[str, list[Path]]
    holdout: list[Path]
    truth: Truth
    band: dict[str, float]


def snr_cuts(band: str) -> dict[str, tuple[float, float]]:
    """S/N classes: g < 18.3, 19 <= g <= 21.5 and g <= 21.5 on the default GalSim g tile.

    ``all`` holds the stars of both classes and those between them (18.3-19):
    the issue's single centroid ratio over every star the faint limit keeps.

    S/N of a point source in a visit with the middle of the seeing range (0.8" at
    500 nm), the g zero point and sky of :mod:`galsim_tile`; ``band`` only names
    the tile being scored (the cuts are the same for every band and renderer).
    """
    import galsim

    del band
    spec = gt.band_spec("g")
    reference = gt.bandpass(spec).effective_wavelength
    fwhm = np.mean(spec.seeing_fwhm_arcsec) * (reference / 500.0) ** -0.2
    psf = galsim.Kolmogorov(fwhm=fwhm).drawImage(nx=41, ny=41, scale=spec.pixel_scale_arcsec)

    def snr(mag: float) -> float:
        flux = 10.0 ** (-0.4 * (mag - spec.zero_point))
        return float(gt.point_source_snr(flux, psf.array, spec.sky_sigma, spec.gain))

    return {
        "bright": (snr(18.3), np.inf),
        "faint": (snr(21.5), snr(19.0)),
        "all": (snr(21.5), np.inf),
    }


def squeeze_airmasses(
    airmasses: tuple[float, ...], low: float, top: float, limit: float
) -> tuple[float, ...]:
    """Airmasses moved so that the preset's range ``[low, top]`` becomes ``[low, limit]``.

    ``low + (a - low)·(limit - low)/(top - low)``: the same visits in the same
    order, east and west, closer to the zenith, so that DCR shrinks while the
    visits keep their spread. ``low`` is the preset's smallest (1.01: the
    GalSim field never reaches the zenith).
    """
    if not limit > low:
        raise ValueError(f"--max-airmass must be > {low}, got {limit}")
    return tuple(low + (a - low) * (limit - low) / (top - low) for a in airmasses)


#: Largest airmass of the fitted visits (``--max-airmass``; None keeps the presets').
MAX_AIRMASS: float | None = None


def _squeezed(spec, replace):
    """``spec`` with its airmasses squeezed to :data:`MAX_AIRMASS` by ``replace``
    (``dataclasses.replace`` or ``attrs.evolve``); unchanged when it is None."""
    if MAX_AIRMASS is None:
        return spec
    span = min(spec.airmasses), max(spec.airmasses), MAX_AIRMASS
    return replace(
        spec,
        airmasses=squeeze_airmasses(spec.airmasses, *span),
        holdout_airmasses=squeeze_airmasses(spec.holdout_airmasses, *span),
    )


def _galsim_case(
    seed: int,
    size: int,
    band: str,
    directory: Path,
    seeing: tuple[float, float] | None = None,
    no_artifacts: bool = False,
) -> Case:
    changes = {} if seeing is None else {"seeing_fwhm_arcsec": tuple(seeing)}
    spec = gt.band_spec(band, shape=(size, size), seed=seed, **changes)
    spec = _squeezed(spec, dataclasses.replace)
    tile = gt.render_tile(spec)
    base = gt.write_tile(tile, directory / "base")
    detected = gt.render_tile(dataclasses.replace(spec, detected_plane=True))
    clean = gt.render_tile(
        dataclasses.replace(spec, noise_free=True, streak_visit=None, cosmic_rays_per_visit=0)
    )
    extra = {}
    if no_artifacts:
        quiet = gt.render_tile(
            dataclasses.replace(spec, streak_visit=None, cosmic_rays_per_visit=0)
        )
        extra["no_artifacts"] = gt.write_tile(quiet, directory / "no_artifacts")["warps"]
    fitted = ~tile.holdout
    star_index = np.flatnonzero([s.is_star for s in tile.sources])
    truth = Truth(
        holdout_true=tile.true_images[tile.holdout],
        fitted_true=tile.true_images[fitted],
        fitted_visits=[v.visit for v in tile.visits if not v.holdout],
        streak=tile.streak[fitted],
        cosmic_rays=tile.cosmic_rays[fitted],
        sources=np.array([(s.x, s.y, s.flux) for s in tile.sources]),
        star_index=star_index,
        star_snr=np.array([tile.sources[k].snr_visit for k in star_index]),
        sky_sigma=spec.sky_sigma,
    )
    return Case(
        warps={
            "base": base["warps"],
            "detected": gt.write_tile(detected, directory / "detected")["warps"],
            "noise_free": gt.write_tile(clean, directory / "noise_free")["warps"],
            **extra,
        },
        holdout=base["holdout"],
        truth=truth,
        band=gt.band_config(spec),
    )


def sim_truth(tile) -> Truth:
    """The scores' truth of a tile of the package's simulator (``simulate_tile``)."""
    spec = tile.spec
    fitted = ~tile.holdout
    artifacts = tile.artifacts[fitted]
    streak = np.zeros_like(artifacts)
    for v in spec.streak_visits:  # the streak is the largest artifact of its visit
        if v >= len(artifacts):
            continue
        labels, _ = ndimage.label(artifacts[v], structure=np.ones((3, 3)))
        if labels.max():
            streak[v] = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    n_eff = [1.0 / np.sum(p.astype(float) ** 2) for p in tile.psfs[fitted]]
    typical = tile.psfs[fitted][int(np.argsort(n_eff)[len(n_eff) // 2])]
    star_index = np.flatnonzero([s.is_star for s in tile.sources])
    flux = np.array([tile.sources[k].flux for k in star_index])
    return Truth(
        holdout_true=tile.true_images[tile.holdout],
        fitted_true=tile.true_images[fitted],
        fitted_visits=[v.visit for v, h in zip(tile.visits, tile.holdout, strict=True) if not h],
        streak=streak,
        cosmic_rays=artifacts & ~streak,
        sources=np.array([(s.x, s.y, s.flux) for s in tile.sources]),
        star_index=star_index,
        star_snr=gt.point_source_snr(flux, typical, spec.sky_sigma, spec.gain),
        sky_sigma=spec.sky_sigma,
    )


def _sim_case(seed: int, size: int, band: str, directory: Path, no_artifacts: bool = False) -> Case:
    spec = realistic_spec((size, size), seed, band)
    spec = _squeezed(spec, attrs.evolve)
    tile = simulate_tile(spec)
    base = write_simulation(tile, directory / "base")
    detected = simulate_tile(attrs.evolve(spec, detected_plane=True))
    clean = attrs.evolve(tile, images=tile.true_images.copy())
    truth = sim_truth(tile)
    extra = {}
    if no_artifacts:
        quiet = simulate_tile(attrs.evolve(spec, streak_visits=(), cosmic_rays_per_visit=0))
        extra["no_artifacts"] = write_simulation(quiet, directory / "no_artifacts")["warps"]
    return Case(
        warps={
            "base": base["warps"],
            "detected": write_simulation(detected, directory / "detected")["warps"],
            "noise_free": write_simulation(clean, directory / "noise_free")["warps"],
            **extra,
        },
        holdout=base["holdout"],
        truth=truth,
        band={"effectiveWavelength": spec.effective_wavelength_nm, "bandwidth": spec.bandwidth_nm},
    )


RENDERERS = {"galsim": _galsim_case, "sim": _sim_case}


def _static_template(warp_paths: list[Path], path: Path) -> Path:
    """The plain coadd of the warps as an afw-style file with the tile WCS."""
    coadd = plain_coadd(open_warps(warp_paths), BAD_PLANES).compute()
    no_data = coadd["n_image"].values == 0
    mask = np.where(no_data, 1 << 8, 0).astype(np.int32)
    wcs = WCS(fits.getheader(warp_paths[0], "IMAGE"))
    header = fits.Header()
    header["FILTER"] = fits.getheader(warp_paths[0], 0).get("FILTER", "")
    return gt.write_afw_exposure(
        path,
        header,
        wcs,
        coadd["image"].values,
        mask,
        coadd["variance"].values,
        {"NO_DATA": 8},
        overwrite=True,
    )


def _without_artifacts(warps, truth: Truth):
    """The warps with their truth artifacts (streak, cosmic rays) flagged ``BAD``."""
    bad = MaskPlanes(warps.attrs["mask_planes"]).value(["BAD"])
    artifacts = truth.streak | truth.cosmic_rays
    if warps.sizes["visit"] != artifacts.shape[0]:
        raise ValueError(f"{warps.sizes['visit']} warps but {artifacts.shape[0]} truth masks")
    mask = warps["mask"].values | np.where(artifacts, bad, 0).astype(warps["mask"].dtype)
    return warps.assign(mask=(warps["mask"].dims, mask))


def _score(
    templates: list[np.ndarray], plain: list[np.ndarray], case: Case, stars: dict
) -> dict[str, float]:
    scores = {
        name: centroid_rms(templates, case.truth, xy) / centroid_rms(plain, case.truth, xy)
        for name, xy in stars.items()
    }
    scores["tmpl rms"] = source_rms(templates, case.truth) / source_rms(plain, case.truth)
    scores["diff rms"] = difference_rms(templates, case.truth) / difference_rms(plain, case.truth)
    return scores


def _run_variant(name, variant, case, size, client, scratch, plain_template) -> dict[str, float]:
    config = DcrAssembleCoaddConfig()
    config.update(**case.band, subregionSize=[min(size, 128)] * 2, **variant.config)
    work = scratch / f"work-{name.replace(' ', '_')}"
    dataset = run(
        config,
        case.warps[variant.inputs],
        output=scratch / f"{name.replace(' ', '_')}.zarr",
        template=plain_template if variant.static_template else None,
        client=client,
        work_dir=work,
        overwrite=True,
    )
    templates = [warp_template(dataset, path) for path in case.holdout]
    clipped = dataset["artifacts"].sel(visit=case.truth.fitted_visits).values.astype(bool)
    scores = {"templates": templates, **artifact_scores(clipped, case.truth)}
    if variant.inputs in ("noise_free", "no_artifacts"):  # no artifacts were rendered
        scores.update(streak=float("nan"), cosmic=float("nan"))
    scores["fit s"] = float(dataset.attrs["timings_s"]["fit_s"])
    return scores


def _line(label: str, values: dict[str, float]) -> str:
    cells = []
    for column in COLUMNS:
        value = values.get(column, float("nan"))
        cells.append(f"{value:>12.1f}" if column == "fit s" else f"{value:>12.3f}")
    return f"{label:<34}" + "".join(cells)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renderer", choices=["galsim", "sim", "both"], default="both")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--size", type=int, default=256, help="tile size, px")
    parser.add_argument("--band", choices=["g", "r", "i", "z"], default="g")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--max-airmass",
        type=float,
        default=None,
        help="squeeze the preset's airmasses (fitted and held out) into [1.01, this]: less DCR",
    )
    parser.add_argument(
        "--seeing",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="GalSim tiles' seeing range at 500 nm, arcsec (default the preset's 0.6 1.0)",
    )
    args = parser.parse_args(argv)
    global MAX_AIRMASS
    MAX_AIRMASS = args.max_airmass
    if args.seeing is not None and args.renderer != "galsim":
        parser.error("--seeing applies to --renderer galsim only")
    logging.basicConfig(level=logging.WARNING)
    renderers = ["galsim", "sim"] if args.renderer == "both" else [args.renderer]
    cuts = snr_cuts(args.band)
    started = time.perf_counter()
    print(machine_summary(("dcr_dask",)))
    print(
        f"tile {args.size}^2, band {args.band}, seeds {args.seeds}, airmasses "
        f"{'up to ' + str(args.max_airmass) if args.max_airmass else 'of the preset'}; "
        "S/N classes: bright >= "
        f"{cuts['bright'][0]:.0f}, faint {cuts['faint'][0]:.0f}-{cuts['faint'][1]:.0f} "
        "(g < 18.3, 19-21.5 on the default GalSim g tile); ratios are to the plain coadd"
    )
    header = f"{'seed renderer variant':<34}" + "".join(f"{c:>12}" for c in COLUMNS)
    print(header)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with dask_client(n_workers=args.workers) as client, tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for renderer in renderers:
                scratch = Path(tmp) / f"{renderer}-{seed}"
                rendered = time.perf_counter()
                options = {} if args.seeing is None else {"seeing": tuple(args.seeing)}
                if any(VARIANTS[name].inputs == "no_artifacts" for name in args.variants):
                    options["no_artifacts"] = True
                case = RENDERERS[renderer](seed, args.size, args.band, scratch, **options)
                rendered = time.perf_counter() - rendered
                stars = star_classes(case.truth, cuts)
                plain_image = plain_coadd(open_warps(case.warps["base"]), BAD_PLANES)
                plain = [plain_image["image"].values] * len(case.holdout)
                noisy = _without_artifacts(open_warps(case.warps["base"]), case.truth)
                noisy = plain_coadd(noisy, BAD_PLANES)["image"].values
                clean = plain_coadd(open_warps(case.warps["noise_free"]), BAD_PLANES)
                floor = {
                    name: noise_share(noisy, clean["image"].values, case.truth, xy)
                    for name, xy in stars.items()
                }
                results.setdefault((renderer, NOISE_ROW), []).append(floor)
                clean_scores = _score([noisy] * len(case.holdout), plain, case, stars)
                results.setdefault((renderer, CLEAN_ROW), []).append(clean_scores)
                counts = ", ".join(f"{len(v)} {k}" for k, v in stars.items())
                errors = (f"{k} {centroid_rms(plain, case.truth, v):.4f}" for k, v in stars.items())
                shares = (f"{k} {v:.3f}" for k, v in floor.items())
                print(
                    f"{seed:>4} {renderer:<8} rendered in {rendered:.1f} s; stars: {counts}; "
                    "plain coadd RMS centroid error (px): " + ", ".join(errors) + "; "
                    "share from noise alone: " + ", ".join(shares),
                    flush=True,
                )
                print(_line(f"{seed:>4} {renderer:<8} {CLEAN_ROW}", clean_scores), flush=True)
                plain_file = _static_template(case.warps["base"], scratch / "plain_template.fits")
                for name in args.variants:
                    scores = _run_variant(
                        name, VARIANTS[name], case, args.size, client, scratch, plain_file
                    )
                    scores.update(_score(scores.pop("templates"), plain, case, stars))
                    results.setdefault((renderer, name), []).append(scores)
                    print(_line(f"{seed:>4} {renderer:<8} {name}", scores), flush=True)
    print(f"\nmean ± std over seeds {args.seeds} (nan: class or artifact absent)")
    print(f"{'renderer variant':<26}" + "".join(f"{c:>15}" for c in COLUMNS))
    for (renderer, name), rows in results.items():
        cells = []
        for column in COLUMNS:
            values = np.array([r.get(column, np.nan) for r in rows], float)
            finite = values[np.isfinite(values)]
            mean = finite.mean() if finite.size else float("nan")
            std = finite.std() if finite.size else float("nan")
            digits = 1 if column == "fit s" else 3
            cells.append(f"{mean:>8.{digits}f}±{std:<6.{digits}f}")
        print(f"{renderer + ' ' + name:<26}" + "".join(cells))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
