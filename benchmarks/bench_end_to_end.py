"""The whole run against a reference-structure implementation: CPU seconds per stage, and accuracy.

Issue 17, point 1. One realistic g tile (``dcr_dask.simulate.realistic_spec``,
with a ``DETECTED`` plane as Rubin's warps have: the reference's convergence
metric is taken on ``DETECTED`` pixels and stops after one update without it)
is written as warp files, then, interleaved round by round:

- **reference**: ``benchmarks/_reference_structure.py``, Rubin's
  ``DcrAssembleCoaddTask`` cost structure in plain numpy/scipy, in this process,
  with the reference's configuration (``dcr_dask.config.PRESETS["reference"]``:
  three sub-bands, ``minNumIter``/``maxNumIter`` ``S``/``3S``, threshold 1e-3,
  order-3 spline shifts, the static model starts the fit);
- **dcr_dask**: ``dcr_dask.running.pipeline.run`` as ``dcr-dask run`` runs it,
  with the default configuration (the tile's band given), on a LocalCluster of
  ``--workers`` workers of one thread each, started and closed by the benchmark.

CPU seconds are process time summed over every process (for dcr_dask the client,
which runs the scheduler, and the nanny and worker processes, read with psutil at
each stage's start and end; the stages are those of ``run``'s ``timings``). Each
candidate's best round (least whole-run CPU) is reported. dcr_dask's run is
wrapped in distributed's ``performance_report``; the HTML goes to
``--report-dir`` (default ``benchmarks/reports/``, not committed).

Accuracy, on the two held-out visits (benchmarks/_realistic_scoring.py): RMS
centroid error of isolated bright and faint stars in the DCR-matched templates,
and the RMS of the matched difference against the noise-free truth, each divided
by the plain coadd's (lower is better); streak and cosmic-ray recall of the
artifact masks.

Run: ``python benchmarks/bench_end_to_end.py [--size 512] [--visits 12] [--rounds 2]
[--workers 2] [--seed 1]`` (about 3 minutes per round at the default size on a
quiet 2-core machine).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import numpy as np
import psutil
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import machine_summary, warp_template
from _realistic_scoring import Truth, artifact_scores, centroid_rms, difference_rms, star_classes
from _reference_structure import ReferenceResult, reference_run, shift_model
from bench_realistic import BAD_PLANES, sim_truth, snr_cuts

from dcr_dask.config import PRESETS, DcrAssembleCoaddConfig
from dcr_dask.graph.coadd import plain_coadd
from dcr_dask.io.fits import read_warp_header
from dcr_dask.io.warps import open_warps
from dcr_dask.running import pipeline
from dcr_dask.running.cluster import dask_client
from dcr_dask.settings import run_shifts
from dcr_dask.simulate import realistic_spec, simulate_tile, write_simulation

REPORT_DIR = Path(__file__).resolve().parent / "reports"

#: Rows of the table: stage name, the reference's stages, dcr_dask's CPU keys (below).
STAGES = {
    "ingest (+ input checks)": (["ingest"], ["ingest_s", "input_checks_s"]),
    "PSF matching": (["psf_matching"], ["psf_matching"]),
    "static model": (["static_model"], ["static_model"]),
    "detection + artifacts": (
        ["detection", "artifacts"],
        ["variance_scale", "find_artifacts", "dcr_reference_s", "artifact_masks_s"],
    ),
    "fit (start, weights, updates)": (["fit"], ["direct_coadd_s", "inputs_s", "fit_s"]),
    "write (+ coadd PSF)": (["write"], ["coadd_psf_s", "write_s"]),
}


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Case:
    warps: list[Path]
    holdout: list[Path]
    truth: Truth
    band: dict[str, float]


def make_case(size: int, visits: int, seed: int, directory: Path) -> Case:
    """The realistic g tile with a DETECTED plane, written as warps, and its truth."""
    spec = realistic_spec((size, size), seed, "g")
    spec = attrs.evolve(spec, detected_plane=True)
    if visits != len(spec.airmasses):
        airmasses = tuple(float(a) for a in np.round(np.linspace(1.01, 2.0, visits), 3))
        spec = attrs.evolve(spec, airmasses=airmasses)
    tile = simulate_tile(spec)
    paths = write_simulation(tile, directory)
    truth = sim_truth(tile)
    return Case(
        warps=list(paths["warps"]),
        holdout=list(paths["holdout"]),
        truth=truth,
        band={"effectiveWavelength": spec.effective_wavelength_nm, "bandwidth": spec.bandwidth_nm},
    )


# --------------------------------------------------------------------------- CPU accounting


def all_cpu_s() -> float:
    """User + system CPU seconds of this process and all its live descendants."""
    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


@contextlib.contextmanager
def stage_cpu_probes(cpu: dict[str, float]) -> Iterator[None]:
    """Record the CPU seconds of every process during each of ``run``'s timed stages,
    and inside CompareWarp of the PSF-matched and static-model stores, the variance
    scale and the footprints' two eager passes (``find_artifacts``), so that
    ``psf_matching`` = CompareWarp minus the last three."""
    original_stage = pipeline._Run.stage
    original_store = pipeline._stage_store
    originals = {
        name: getattr(pipeline, name) for name in ("warp_variance_scale", "find_artifacts")
    }

    @contextlib.contextmanager
    def stage(self, timing, running=None):  # type: ignore[no-untyped-def]
        start = all_cpu_s()
        with original_stage(self, timing, running):
            yield
        cpu[timing] = cpu.get(timing, 0.0) + all_cpu_s() - start

    def store(stages, name, *args, **kwargs):  # type: ignore[no-untyped-def]
        start = all_cpu_s()
        result = original_store(stages, name, *args, **kwargs)
        cpu[name] = cpu.get(name, 0.0) + all_cpu_s() - start
        return result

    def timed(name, key):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            start = all_cpu_s()
            result = originals[name](*args, **kwargs)
            cpu[key] = cpu.get(key, 0.0) + all_cpu_s() - start
            return result

        return call

    pipeline._Run.stage = stage  # type: ignore[method-assign]
    pipeline._stage_store = store
    pipeline.warp_variance_scale = timed("warp_variance_scale", "variance_scale")
    pipeline.find_artifacts = timed("find_artifacts", "find_artifacts")
    try:
        yield
    finally:
        pipeline._Run.stage = original_stage  # type: ignore[method-assign]
        pipeline._stage_store = original_store
        for name, function in originals.items():
            setattr(pipeline, name, function)


# --------------------------------------------------------------------------- candidates


@dataclasses.dataclass
class Outcome:
    cpu: dict[str, float]  # table row -> CPU s
    wall: dict[str, float]
    updates: int
    update_cpu_s: float  # per model update
    templates: list[np.ndarray]
    artifacts: np.ndarray
    detail: str = ""


def run_reference(case: Case, scratch: Path, order: int | None) -> Outcome:
    config = DcrAssembleCoaddConfig()
    config.update(**case.band, **PRESETS["reference"]())
    if order is not None:
        config.update(imageInterpOrder=order)
    # one BLAS thread, as Rubin's pipelines run (and as Dask's workers do)
    with threadpool_limits(limits=1, user_api="blas"):
        result: ReferenceResult = reference_run(
            case.warps, config, scratch / "reference_out", log=log
        )
    cpu = {row: sum(result.cpu_s.get(k, 0.0) for k in ref) for row, (ref, _) in STAGES.items()}
    wall = {row: sum(result.wall_s.get(k, 0.0) for k in ref) for row, (ref, _) in STAGES.items()}
    cpu["whole run"], wall["whole run"] = sum(result.cpu_s.values()), sum(result.wall_s.values())
    # the first entry per subregion is the initial metric, the others one update each
    per_update = result.iteration_cpu_s
    updates = sum(result.iterations)
    update_cpu = (sum(per_update) - sum(per_update[: len(result.iterations)])) / max(updates, 1)
    ny, nx = result.amplified.shape[1:]
    templates = []
    planes = result.amplified.astype(np.float64)
    for path in case.holdout:
        info = read_warp_header(path)[0]
        shifts = run_shifts([info], result.wcs, config, x=(nx - 1) / 2, y=(ny - 1) / 2)
        templates.append(shift_model(planes, shifts.shifts_px[0], int(config.imageInterpOrder)))
    detail = (
        f"reference: {updates} model updates over {len(result.iterations)} subregion(s), "
        f"{update_cpu:.2f} CPU s each (update + convergence metric); "
        f"stage CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in result.cpu_s.items())
    )
    return Outcome(cpu, wall, updates, update_cpu, templates, result.artifacts, detail)


def run_dcr_dask(case: Case, scratch: Path, workers: int, report: Path) -> Outcome:
    config = DcrAssembleCoaddConfig()
    config.update(**case.band)
    cpu: dict[str, float] = {}
    started_cpu, started = all_cpu_s(), time.perf_counter()
    with stage_cpu_probes(cpu), dask_client(n_workers=workers, threads_per_worker=1) as client:
        from distributed import performance_report

        cluster_cpu = all_cpu_s() - started_cpu
        run_cpu = all_cpu_s()
        with performance_report(filename=str(report)):
            dataset = pipeline.run(
                config,
                case.warps,
                output=scratch / "dcr_dask.zarr",
                client=client,
                work_dir=scratch / "dcr_dask.work",
                overwrite=True,
            )
            run_cpu = all_cpu_s() - run_cpu
    timings = dict(dataset.attrs["timings_s"])
    compare = cpu.get("compare_warp_s", 0.0)
    cpu["psf_matching"] = compare - sum(
        cpu.get(k, 0.0) for k in ("static_model", "variance_scale", "find_artifacts")
    )
    rows = {row: sum(cpu.get(k, 0.0) for k in keys) for row, (_, keys) in STAGES.items()}
    rows["other (open inputs, plan, graph)"] = run_cpu - sum(rows.values())
    rows["cluster start"] = cluster_cpu
    rows["whole run"] = run_cpu + cluster_cpu
    wall = {
        row: sum(timings.get(k, 0.0) for k in keys if k.endswith("_s"))
        for row, (_, keys) in STAGES.items()
    }
    wall["whole run"] = time.perf_counter() - started
    blocks = dataset.attrs["convergence"]["blocks"]
    updates = int(sum(int(b["iterations"]) for b in blocks))
    update_cpu = cpu.get("fit_s", 0.0) / max(updates, 1)
    templates = [warp_template(dataset, path) for path in case.holdout]
    artifacts = dataset["artifacts"].sel(visit=case.truth.fitted_visits).values.astype(bool)
    detail = (
        f"dcr_dask: {updates} model updates over {len(blocks)} subregion(s), fit stage "
        f"{update_cpu:.2f} CPU s per update; stage CPU s: "
        + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
        + f"; report {report}"
    )
    return Outcome(rows, wall, updates, update_cpu, templates, artifacts, detail)


# --------------------------------------------------------------------------- scoring, table


def accuracy(templates: list[np.ndarray], plain: list[np.ndarray], case: Case, stars: dict) -> dict:
    scores = {
        name: centroid_rms(templates, case.truth, xy) / centroid_rms(plain, case.truth, xy)
        for name, xy in stars.items()
    }
    scores["diff rms"] = difference_rms(templates, case.truth) / difference_rms(plain, case.truth)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="tile side, px")
    parser.add_argument("--visits", type=int, default=12, help="fitted visits (2 more held out)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; best kept")
    parser.add_argument("--workers", type=int, default=2, help="dcr_dask workers (1 thread each)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--ref-order", type=int, default=None, help="reference spline order (default: config's 3)"
    )
    parser.add_argument("--report-dir", type=Path, default=REPORT_DIR)
    parser.add_argument("--skip-reference", action="store_true", help="profile dcr_dask only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    log("bench_end_to_end: the whole run against the reference structure (issue 17.1)")
    log(machine_summary(("dcr_dask",)))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        case = make_case(args.size, args.visits, args.seed, tmp_path / "tile")
        log(
            f"tile {args.size}^2 g, {len(case.warps)} fitted + {len(case.holdout)} held-out "
            f"visits, seed {args.seed}, simulated in {time.perf_counter() - t0:.1f} s"
        )
        plain_image = plain_coadd(open_warps(case.warps), BAD_PLANES)["image"].values
        plain = [plain_image] * len(case.holdout)
        stars = star_classes(case.truth, snr_cuts("g"))
        log("stars: " + ", ".join(f"{len(v)} {k}" for k, v in stars.items()))
        best: dict[str, Outcome] = {}
        for round_ in range(args.rounds):
            candidates = {} if args.skip_reference else {"reference": None}
            candidates["dcr_dask"] = None
            for name in candidates:
                scratch = tmp_path / f"{name}-{round_}"
                scratch.mkdir()
                if name == "reference":
                    outcome = run_reference(case, scratch, args.ref_order)
                else:
                    report = args.report_dir / (
                        f"dcr_dask_{args.size}x{len(case.warps)}_{stamp}_round{round_ + 1}.html"
                    )
                    outcome = run_dcr_dask(case, scratch, args.workers, report)
                log(
                    f"round {round_ + 1}/{args.rounds} {name:<9} whole run "
                    f"{outcome.cpu['whole run']:7.1f} CPU s, {outcome.wall['whole run']:6.1f} s "
                    f"wall\n    {outcome.detail}"
                )
                if name not in best or outcome.cpu["whole run"] < best[name].cpu["whole run"]:
                    best[name] = outcome
        scores = {
            name: {
                **accuracy(o.templates, plain, case, stars),
                **artifact_scores(o.artifacts, case.truth),
            }
            for name, o in best.items()
        }
    dcr = best["dcr_dask"]
    ref = best.get("reference")
    log(
        f"\nCPU seconds, all processes, best of {args.rounds} round(s) "
        "(ratio = reference / dcr_dask)"
    )
    log(f"{'stage':<34}{'reference':>11}{'dcr_dask':>11}{'ratio':>9}")
    for row in [*STAGES, "other (open inputs, plan, graph)", "cluster start", "whole run"]:
        r = ref.cpu.get(row, 0.0) if ref else float("nan")
        d = dcr.cpu.get(row, 0.0)
        ratio = r / d if d > 0 and r > 0 else float("nan")
        log(f"{row:<34}{r:>11.2f}{d:>11.2f}{ratio:>8.1f}x")
    r_upd = ref.update_cpu_s if ref else float("nan")
    log(
        f"{'one model update':<34}{r_upd:>11.3f}{dcr.update_cpu_s:>11.3f}"
        f"{r_upd / dcr.update_cpu_s:>8.1f}x"
    )
    log(
        f"{'model updates':<34}{(ref.updates if ref else 0):>11d}{dcr.updates:>11d}"
        "   (dcr_dask: fit stage CPU / updates)"
    )
    log("\naccuracy on the held-out visits (centroid and diff rms relative to the plain coadd)")
    columns = ["bright", "faint", "diff rms", "streak", "cosmic", "bright clip"]
    log(f"{'':<12}" + "".join(f"{c:>12}" for c in columns))
    for name, values in scores.items():
        log(f"{name:<12}" + "".join(f"{values.get(c, float('nan')):>12.3f}" for c in columns))
    if ref:
        whole = ref.cpu["whole run"] / dcr.cpu["whole run"]
        per_update = ref.update_cpu_s / dcr.update_cpu_s
        accurate = all(
            scores["dcr_dask"][c] <= scores["reference"][c] * 1.01
            for c in ("bright", "faint", "diff rms")
            if np.isfinite(scores["reference"][c])  # an empty star class is left out
        )
        log(
            f"\nTARGET whole run >= 5x: {whole:.1f}x ({'met' if whole >= 5 else 'NOT met'}); "
            f"per update >= 10x: {per_update:.1f}x ({'met' if per_update >= 10 else 'NOT met'}); "
            f"accuracy equal or better (1% tolerance): {'yes' if accurate else 'NO'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
