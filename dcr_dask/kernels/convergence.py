"""Convergence metric, gain and stopping rules of the DCR fit.

docs/algorithm.md, "Convergence and stopping rules" and "Gain".

The fit of each subregion is driven by a scalar: how far the DCR-matched
templates are from the visit images, weighted toward significant pixels. The
gain of the next iteration and the decision to stop follow from the history of
that metric, as in the reference's ``DcrAssembleCoaddTask.run``,
``calculateConvergence``, ``calculateSingleConvergence`` and
``calculateGain``. These are pure functions of arrays and lists: the graph
layer computes the per-block pieces, the driver keeps the history.

A typical driver loop for one subregion::

    history = [convergence_metric(...)[0]]      # metric of the starting model
    gains = []
    while True:
        gains.append(calculate_gain(history, gains, base, use_progressive))
        model = iterate_block(..., gain=gains[-1])
        history.append(convergence_metric(...)[0])
        stop, reason = should_stop(history, threshold=..., min_iter=..., max_iter=...,
                                   use_convergence=True)
        if stop:
            break
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "calculate_gain",
    "convergence_metric",
    "should_stop",
    "significance_image",
]

#: Weight of the noise in the significance image, in standard deviations.
_SIGNIFICANCE_SIGMA = 3.0

#: The progressive gain uses the estimates of the last this-many steps (the
#: reference's slice ``[max(nIter - 5, 0):]`` of ``nIter - 1`` estimates).
_GAIN_HISTORY = 5


def significance_image(model: np.ndarray, noise: float) -> np.ndarray:
    """Per-pixel weight of the convergence metric: ``|mean_s M_s| + 3·noise``.

    Parameters
    ----------
    model : numpy.ndarray
        ``(S, ny, nx)`` model planes (not amplified) over the region where the
        metric is measured, flux.
    noise : float
        Background noise of the second plane ``M_1``, flux
        (:func:`dcr_dask.kernels.regularize.background_noise`). The reference measures
        it over the whole patch with a border of ``bufferSize`` pixels each
        time the metric is computed.

    Returns
    -------
    numpy.ndarray of float64
        ``(ny, nx)`` significance; all ones if it would be all zero.
    """
    model = np.asarray(model, dtype=np.float64)
    if model.ndim != 3:
        raise ValueError(f"model must have shape (S, ny, nx), got {model.shape}")
    significance = np.abs(model.mean(axis=0)) + _SIGNIFICANCE_SIGMA * float(noise)
    if np.max(significance) == 0:
        significance += 1.0
    return significance


def convergence_metric(
    images: np.ndarray,
    templates: np.ndarray,
    good: np.ndarray,
    convergence_mask: np.ndarray,
    significance: np.ndarray,
) -> tuple[float, np.ndarray]:
    """Quality of fit of the templates: the mean over visits of a relative residual.

    For each visit, over the pixels where ``|I − t|`` is finite, that are good
    and that carry one of ``convergenceMaskPlanes`` in the visit's mask::

        c_v = Σ |I_v − t_v|·σ  /  Σ (|I_v + t_v|/2)·σ

    and ``c_v = 0`` if there is no such pixel. The metric is the plain mean of
    ``c_v`` over visits (the reference does not use the visit weights here).
    The reference divides both sums by the median of ``|I − t|·σ`` first,
    which changes nothing but makes the ratio NaN when that median is 0.

    Parameters
    ----------
    images, templates : numpy.ndarray
        ``(V, ny, nx)`` visit images and their templates over the subregion
        (without its buffer), flux.
    good : numpy.ndarray of bool
        ``(V, ny, nx)`` good-pixel flags.
    convergence_mask : numpy.ndarray of bool
        ``(V, ny, nx)`` or ``(1, ny, nx)``: pixels with a
        ``convergenceMaskPlanes`` bit (``DETECTED``) in each visit's mask.
    significance : numpy.ndarray
        ``(ny, nx)`` from :func:`significance_image`.

    Returns
    -------
    metric : float
        Mean of ``c_v``; 1.0 if there are no visits (as the reference).
    per_visit : numpy.ndarray of float64
        ``(V,)`` values ``c_v``. A visit whose pixels sum to 0 in the
        denominator gets 0 if the numerator is 0 too, else +inf.
    """
    images = np.asarray(images, dtype=np.float64)
    templates = np.asarray(templates, dtype=np.float64)
    good = np.asarray(good, dtype=bool)
    mask = np.asarray(convergence_mask, dtype=bool)
    significance = np.asarray(significance, dtype=np.float64)
    if images.ndim != 3 or not images.shape == templates.shape == good.shape:
        raise ValueError(
            f"images {images.shape}, templates {templates.shape} and good {good.shape}"
            " must have one shape (V, ny, nx)"
        )
    n_visits = images.shape[0]
    if mask.ndim != 3 or mask.shape[0] not in (1, n_visits) or mask.shape[1:] != images.shape[1:]:
        raise ValueError(
            f"convergence_mask must have shape ({n_visits} or 1, ny, nx), got {mask.shape}"
        )
    if significance.shape != images.shape[1:]:
        raise ValueError(
            f"significance must have shape {images.shape[1:]}, got {significance.shape}"
        )
    per_visit = np.array(
        [
            visit_convergence_term(
                images[v], templates[v], good[v], mask[v if mask.shape[0] > 1 else 0], significance
            )
            for v in range(n_visits)
        ],
        dtype=np.float64,
    )
    metric = float(per_visit.mean()) if n_visits else 1.0
    return metric, per_visit


def visit_convergence_term(
    image: np.ndarray,
    template: np.ndarray,
    good: np.ndarray,
    convergence_mask: np.ndarray,
    significance: np.ndarray,
) -> float:
    """One visit's term ``c_v`` of :func:`convergence_metric`.

    Lets a caller that makes the templates one visit at a time (the streamed
    iteration) compute the metric without holding all of them.

    Only the good pixels inside the convergence mask (a quarter of the pixels
    on a realistic tile: ``DETECTED``) are gathered and computed on, in float64;
    the sums are those of the definition over the same values in the same order.

    Parameters
    ----------
    image, template : numpy.ndarray
        ``(ny, nx)`` visit image and its template over the subregion, flux.
    good, convergence_mask : numpy.ndarray of bool
        ``(ny, nx)`` good-pixel flags and ``convergenceMaskPlanes`` pixels.
    significance : numpy.ndarray
        ``(ny, nx)`` from :func:`significance_image`.

    Returns
    -------
    float
        ``Σ |I − t|·σ / Σ (|I + t|/2)·σ`` over the usable pixels (float64
        sums); 0 without usable pixels; +inf if only the denominator is 0.
    """
    use = np.logical_and(good, convergence_mask)
    image = np.asarray(image)[use]
    template = np.asarray(template)[use]
    significance = np.asarray(significance, dtype=np.float64)[use]
    with np.errstate(invalid="ignore", over="ignore"):  # in place: fewer temporaries
        difference = np.subtract(image, template, dtype=np.float64)
        np.abs(difference, out=difference)
        difference *= significance
        reference = np.add(image, template, dtype=np.float64)
        np.abs(reference, out=reference)
        reference *= significance
        reference /= 2.0
    finite = np.isfinite(difference)
    if not finite.all():
        difference, reference = difference[finite], reference[finite]
    if difference.size == 0:
        return 0.0
    numerator = float(np.sum(difference))
    denominator = float(np.sum(reference))
    if denominator > 0:
        return numerator / denominator
    return float(np.inf) if numerator > 0 else 0.0


def calculate_gain(
    convergence_list: Sequence[float],
    gain_list: Sequence[float],
    base_gain: float,
    use_progressive: bool,
) -> float:
    """Gain of the next iteration, from the metrics and gains so far.

    As the reference's ``calculateGain``. With ``use_progressive`` and at
    least three metrics, each past step ``i`` gives an estimate of the final
    metric ``e_i = ((1 + g_i)·c_{i+1} − c_i)/g_i`` (negative → 0), and ``e`` is
    the median of the last estimates (at most four: the reference slices
    ``[max(n − 5, 0):]`` of its ``n − 1`` estimates). With
    ``pred = (e·g_last + c_{-2})/(1 + g_last)`` and
    ``δ = (pred − c_{-1}) / ((c_{-2} − e)/(1 + g_last))``, the gain is
    ``max(base, ((1 − |δ|) + g_last)/2)``. Otherwise it is ``base_gain``.

    Unlike the reference, ``gain_list`` is not modified: append the result.

    Parameters
    ----------
    convergence_list : sequence of float
        Metrics so far, the starting model's first.
    gain_list : sequence of float
        Gains used so far: one fewer than the metrics.
    base_gain : float
        ``baseGain``, or its default
        (:meth:`dcr_dask.config.DcrAssembleCoaddConfig.resolved_base_gain`).
    use_progressive : bool
        ``useProgressiveGain``.

    Returns
    -------
    float
        Gain for the next iteration.

    Raises
    ------
    ValueError
        If ``len(convergence_list) != len(gain_list) + 1``.
    """
    convergence = np.asarray(convergence_list, dtype=np.float64)
    gains = np.asarray(gain_list, dtype=np.float64)
    n_metrics = convergence.size
    if n_metrics != gains.size + 1:
        raise ValueError(
            f"convergence_list ({n_metrics}) must be one element longer than"
            f" gain_list ({gains.size})"
        )
    if not use_progressive or n_metrics <= 2:
        return float(base_gain)
    estimates = ((1.0 + gains) * convergence[1:] - convergence[:-1]) / gains
    estimates[estimates < 0] = 0.0
    final = float(np.median(estimates[max(n_metrics - _GAIN_HISTORY, 0) :]))
    last_gain = float(gains[-1])
    last, new = float(convergence[-2]), float(convergence[-1])
    predicted = (final * last_gain + last) / (1.0 + last_gain)
    delta = (predicted - new) / ((last - final) / (1.0 + last_gain))
    return max(float(base_gain), ((1.0 - abs(delta)) + last_gain) / 2.0)


def should_stop(
    history: Sequence[float],
    *,
    threshold: float,
    min_iter: int,
    max_iter: int,
    use_convergence: bool,
) -> tuple[bool, str]:
    """Whether the fit of a subregion stops after the latest iteration.

    ``history`` holds one metric per model state: the starting model's, then
    one per iteration done, so ``n = len(history) − 1`` iterations are done
    (without ``useConvergence`` only its length counts). With
    ``check = (c_{-2} − c_{-1})/c_{-1}``, the rules are taken in the
    reference's order (``DcrAssembleCoaddTask.run``), whose loop counter is
    ``n − 1`` when they are tested:

    1. ``c_{-1} == 0``: stop, ``"no data"`` (no valid pixel; warn);
    2. ``check < 0`` and ``n − 1 > min_iter``: stop, ``"diverged"`` (warn;
       the reference keeps the diverged model);
    3. ``n − 1 > max_iter``: stop, ``"max iterations"`` (warn if
       ``use_convergence``);
    4. ``check <= threshold`` and ``n > min_iter``: stop, ``"converged"``.

    So at least ``min_iter + 1`` and at most ``max_iter + 2`` iterations run,
    and exactly ``max_iter + 2`` without ``useConvergence`` (``check`` then
    stays 1). These are the reference's counts.

    Parameters
    ----------
    history : sequence of float
        Metrics, starting model first.
    threshold : float
        ``convergenceThreshold``.
    min_iter, max_iter : int
        ``minNumIter`` and ``maxNumIter`` (resolved: the reference's unset
        values are S and 3·S; dcr_dask's defaults are in
        :mod:`dcr_dask.config.reference`).
    use_convergence : bool
        ``useConvergence``.

    Returns
    -------
    stop : bool
        True to stop.
    reason : str
        ``"converged"``, ``"diverged"``, ``"no data"``, ``"max iterations"``,
        or ``""`` to go on.
    """
    n_done = len(history) - 1
    if n_done < 1:
        return False, ""
    check = 1.0
    if use_convergence:
        previous, latest = float(history[-2]), float(history[-1])
        if latest == 0:
            return True, "no data"
        check = (previous - latest) / latest
        if check < 0 and n_done - 1 > min_iter:
            return True, "diverged"
    if n_done - 1 > max_iter:
        return True, "max iterations"
    if check <= threshold and n_done > min_iter:
        return True, "converged"
    return False, ""
