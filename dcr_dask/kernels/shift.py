"""Sub-pixel translation of images: spline interpolation and exact Fourier shifts.

Every shift in the DCR model is a pure translation by ``(dy, dx)`` pixels
(numpy axis order). Two methods are offered:

``spline``
    ``scipy.ndimage`` spline interpolation of order ``imageInterpOrder``, as the
    reference does. The spline prefilter of an image depends only on the image,
    so it is computed once (:func:`spline_prefilter`) and reused for all of its
    shifts. Pixels shifted in from outside the array are 0. A translation moves
    every pixel by the same fraction, so the interpolation of the coefficients
    is a separable filter of ``order + 1`` taps along each axis
    (:func:`spline_translate`, two ``ndimage.correlate1d`` calls and a slice),
    equal to ``ndimage.shift(..., mode="constant", prefilter=False)`` to
    rounding, edges included, at a quarter of its cost.
``sinc``
    A Kaiser-windowed sinc kernel of half width :data:`SINC_HALF_WIDTH_PX`,
    applied in Fourier space: the spectrum is multiplied by the kernel's
    transform, built from two 1-D FFTs, so the cost is that of ``fourier``.
    Unlike the phase ramp, the kernel has compact support, so a pixel depends
    only on pixels within ``|shift| + SINC_HALF_WIDTH_PX``: results do not
    depend on where blocks are cut once the halo covers that reach.
``fourier``
    Multiplication of the image's real FFT by the phase ramp
    ``exp(-2πi (k_y dy + k_x dx))``: exact for band-limited images, and the
    average of two shifts (``splitSubfilters``) is the average of two ramps,
    so it costs nothing extra. The shift is periodic: what leaves one side
    enters the other. Callers keep a halo at least as wide as the largest shift
    (``bufferSize``) and discard it, so nothing that wrapped around is kept.

Shifts are given as arrays of shape ``(K, 2)``: ``K`` points whose shifted
images are averaged (``K = 2`` for split sub-bands, 1 otherwise).

The functions here work in float64. :class:`SpectralGrid` is the machinery the
model kernels use for ``fourier`` and ``sinc`` on whole blocks: ``scipy.fft``
transforms in float64 or float32 of a block zero-padded to a fast FFT length,
and products with the separable factors of :func:`shift_factors` made by row
chunks in reused buffers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.fft
from scipy import ndimage, special

__all__ = [
    "SHIFT_METHODS",
    "SpectralGrid",
    "fourier_phase",
    "fourier_phase_factors",
    "fourier_shift",
    "gaussian_transfer",
    "shift_factors",
    "shift_image",
    "sinc_shift",
    "spline_prefilter",
    "spline_shift",
    "spline_translate",
]

#: The methods :func:`shift_image` knows.
SHIFT_METHODS = ("spline", "fourier", "sinc")

ShiftMethod = Literal["spline", "fourier", "sinc"]

#: Half width of the windowed-sinc kernel of the ``sinc`` method, pixels.
SINC_HALF_WIDTH_PX = 12
#: Reach of one shift beyond the shift itself, pixels, by method: the spline
#: prefilter's tails (cubic: 0.268^8 ≈ 3e-5 per application), the windowed-sinc
#: kernel's half width; the exact phase ramp has no finite reach, and gets the sinc's.
INTERPOLATION_REACH_PX = {"spline": 8, "sinc": SINC_HALF_WIDTH_PX, "fourier": SINC_HALF_WIDTH_PX}
#: Shape parameter β of the Kaiser window of that kernel. With the half width
#: above, a Gaussian of σ >= 1.3 px is shifted to better than 1e-4 of its peak
#: (5e-4 at σ = 1 px), ten to a thousand times better than a cubic spline.
SINC_KAISER_BETA = 10.0


def _as_shift_points(shifts: np.ndarray | tuple[float, float]) -> np.ndarray:
    points = np.asarray(shifts, dtype=np.float64)
    if points.shape == (2,):
        points = points[None, :]
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"shifts must have shape (2,) or (K, 2), got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"shifts must be finite, got {points.tolist()}")
    return points


def spline_prefilter(image: np.ndarray, order: int = 3) -> np.ndarray:
    """Spline coefficients of an image, to be reused for several shifts.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image.
    order : int
        Spline order, 0-5. Orders 0 and 1 need no prefilter; the image is
        returned as float64.

    Returns
    -------
    numpy.ndarray
        Float64 coefficients for :func:`spline_shift` with ``prefiltered=True``.
    """
    if order <= 1:
        return np.asarray(image, dtype=np.float64)
    return ndimage.spline_filter(np.asarray(image, dtype=np.float64), order=order)


def spline_shift(
    image: np.ndarray,
    shifts: np.ndarray | tuple[float, float],
    *,
    order: int = 3,
    prefiltered: bool = False,
) -> np.ndarray:
    """Shift an image by spline interpolation; average over several shift points.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image, or its spline coefficients if ``prefiltered``.
    shifts : array_like, shape (2,) or (K, 2)
        ``(dy, dx)`` shifts in pixels; the result is the mean of the K shifted
        images.
    order : int
        Spline order (``imageInterpOrder``).
    prefiltered : bool
        True if ``image`` already holds :func:`spline_prefilter` coefficients.

    Returns
    -------
    numpy.ndarray
        The shifted image (float64); pixels that come from outside are 0.
    """
    points = _as_shift_points(shifts)
    coefficients = image if prefiltered else spline_prefilter(image, order)
    out = spline_translate(coefficients, points[0], order)
    for point in points[1:]:
        out += spline_translate(coefficients, point, order)
    if len(points) > 1:
        out /= len(points)
    return out


def _bspline(t: np.ndarray, order: int) -> np.ndarray:
    """Centred cardinal B-spline of degree ``order`` at ``t`` (truncated-power form)."""
    total = np.zeros_like(t)
    half = (order + 1) / 2.0
    for k in range(order + 2):
        total += (-1) ** k * math.comb(order + 1, k) * np.clip(t + half - k, 0.0, None) ** order
    return total / math.factorial(order)


def _spline_axis(n: int, delta: float, order: int) -> tuple[np.ndarray, int, int, int, int] | None:
    """Taps of a spline translation by ``delta`` along an axis of ``n`` pixels.

    As ``ndimage.shift`` in ``"constant"`` mode without prefilter: output pixel
    ``i`` samples the spline at ``x = i - delta``; it is 0 unless
    ``0 <= x <= n - 1``; else it is ``Σ_j w_j c[b + j - order//2]`` with
    ``b = floor(x)`` (odd orders) or ``floor(x + 0.5)`` (even ones), and
    coefficients beyond the edges mirrored. ``b - i`` is the same for every
    pixel, so the sum is one correlation followed by an integer shift.

    Returns ``(weights, origin, lag, first, stop)``: the taps and the
    ``correlate1d`` origin that put ``Σ_j w_j c[k + j - order//2]`` at index
    ``k``; output pixels ``first <= i < stop`` take index ``i + lag`` of it,
    the others are 0. None if no output pixel samples inside the array.
    """
    x = np.arange(n) + (-float(delta))  # ndimage's own arithmetic for the coordinate
    inside = np.flatnonzero((x >= 0.0) & (x <= n - 1))
    if inside.size == 0:
        return None
    first, stop = int(inside[0]), int(inside[-1]) + 1
    mid = (first + stop - 1) // 2
    base = math.floor(x[mid]) if order % 2 else math.floor(x[mid] + 0.5)
    lag = base - mid
    # rounding of i - delta can move floor(x) by one at the ends of the range; the spline
    # is continuous there, so the taps of the middle pixel give the same value
    lag = min(max(lag, -first), n - stop)
    if order == 0:
        weights = np.ones(1)
    else:
        t = x[mid] - (base - order // 2 + np.arange(order + 1))
        weights = _bspline(t, order)
    return weights, (-1 if order % 2 else 0), lag, first, stop


def spline_translate(
    coefficients: np.ndarray, shift: np.ndarray | tuple[float, float], order: int
) -> np.ndarray:
    """Translate spline coefficients by one ``(dy, dx)``: ``ndimage.shift`` without prefilter.

    Equal to ``ndimage.shift(coefficients, shift, order=order, mode="constant",
    cval=0.0, prefilter=False)`` to rounding (1e-15 relative), edges included,
    but computed as a separable tap filter along each axis
    (``ndimage.correlate1d``, coefficients mirrored at the edges as
    ``ndimage`` does) and a whole-pixel slice, about four times faster.

    Parameters
    ----------
    coefficients : numpy.ndarray
        2-D spline coefficients (:func:`spline_prefilter`; the image itself
        for orders 0 and 1).
    shift : array_like, shape (2,)
        ``(dy, dx)`` in pixels.
    order : int
        Spline order, 0-5.

    Returns
    -------
    numpy.ndarray of float64
        The translated image; pixels sampled from outside the array are 0.
    """
    if not 0 <= order <= 5:
        raise ValueError(f"spline order must be 0-5, got {order}")
    current = np.asarray(coefficients, dtype=np.float64)
    if current.ndim != 2:
        raise ValueError(f"spline_translate needs a 2-D array, got shape {current.shape}")
    dy, dx = (float(v) for v in np.asarray(shift, dtype=np.float64).reshape(2))
    for axis, delta in ((0, dy), (1, dx)):
        n = current.shape[axis]
        plan = _spline_axis(n, delta, order)
        out = np.zeros(current.shape)
        if plan is None:
            return out
        weights, origin, lag, first, stop = plan
        if len(weights) == 1 and weights[0] == 1.0:
            filtered = current
        else:
            filtered = ndimage.correlate1d(
                current, weights, axis=axis, mode="mirror", origin=origin
            )
        take = [slice(None), slice(None)]
        put = [slice(None), slice(None)]
        take[axis] = slice(first + lag, stop + lag)
        put[axis] = slice(first, stop)
        out[tuple(put)] = filtered[tuple(take)]
        current = out
    return current


def fourier_phase(shape: tuple[int, int], shifts: np.ndarray | tuple[float, float]) -> np.ndarray:
    """Phase ramp that shifts a real FFT (``numpy.fft.rfft2``) by ``shifts``.

    Parameters
    ----------
    shape : tuple of int
        Shape ``(ny, nx)`` of the image in real space.
    shifts : array_like, shape (2,) or (K, 2)
        ``(dy, dx)`` shifts in pixels; the ramp is the mean of the K ramps, so
        that multiplying by it gives the mean of the K shifted images.

    Returns
    -------
    numpy.ndarray of complex128
        Array of shape ``(ny, nx // 2 + 1)``.
    """
    points = _as_shift_points(shifts)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    phase = np.zeros((shape[0], shape[1] // 2 + 1), dtype=np.complex128)
    for dy, dx in points:
        phase += np.exp(-2j * np.pi * (ky * dy + kx * dx))
    return phase / len(points)


def fourier_phase_factors(
    shape: tuple[int, int], shifts: np.ndarray | tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Separable factors of the phase ramps of :func:`fourier_phase`.

    A translation's ramp is the outer product of a ramp along y and one along
    x, so ``fourier_phase(shape, shifts)`` equals
    ``mean_k(y_factors[k][:, None] * x_factors[k][None, :])``. Building it from
    these 1-D factors costs one complex product per element instead of one
    complex exponential, and lets a caller multiply a spectrum by the factors
    without forming the 2-D ramp at all.

    Parameters
    ----------
    shape : tuple of int
        Shape ``(ny, nx)`` of the image in real space.
    shifts : array_like, shape (2,) or (K, 2)
        ``(dy, dx)`` shifts in pixels.

    Returns
    -------
    y_factors : numpy.ndarray of complex128
        Shape ``(K, ny)``: ``exp(-2πi k_y dy)`` on ``numpy.fft.fftfreq(ny)``.
    x_factors : numpy.ndarray of complex128
        Shape ``(K, nx // 2 + 1)``: ``exp(-2πi k_x dx)`` on
        ``numpy.fft.rfftfreq(nx)``.
    """
    points = _as_shift_points(shifts)
    ky = np.fft.fftfreq(shape[0])[None, :]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    y_factors = np.exp(-2j * np.pi * ky * points[:, 0:1])
    x_factors = np.exp(-2j * np.pi * kx * points[:, 1:2])
    return y_factors, x_factors


def _sinc_kernels(n: int, deltas: np.ndarray, half_width: int) -> np.ndarray:
    """Length-``n`` circular kernels that shift by ``deltas`` pixels (Kaiser-windowed sinc).

    One row per shift. The taps are normalised to sum to 1, so flux is
    conserved exactly.
    """
    deltas = np.asarray(deltas, dtype=np.float64)
    if 2 * half_width > n:
        raise ValueError(
            f"an axis of {n} pixels is too short for the {half_width}-pixel sinc kernel"
        )
    base = np.floor(deltas)
    taps = base[:, None] + np.arange(1 - half_width, half_width + 1)[None, :]
    t = taps - deltas[:, None]
    window = special.i0(SINC_KAISER_BETA * np.sqrt(np.clip(1.0 - (t / half_width) ** 2, 0.0, None)))
    weights = np.sinc(t) * window
    weights /= weights.sum(axis=1, keepdims=True)
    kernels = np.zeros((len(deltas), n))
    rows = np.arange(len(deltas))[:, None]
    kernels[rows, taps.astype(np.int64) % n] = weights  # 2·half_width <= n: no tap repeats
    return kernels


def shift_factors(
    shape: tuple[int, int],
    shifts: np.ndarray | tuple[float, float],
    method: ShiftMethod,
) -> tuple[np.ndarray, np.ndarray]:
    """Separable spectral factors of a shift, for the ``fourier`` or ``sinc`` method.

    Multiplying a real FFT (``numpy.fft.rfft2``) by
    ``mean_k(y_factors[k][:, None] * x_factors[k][None, :])`` shifts the image
    by the mean of the K shifts.

    Parameters
    ----------
    shape : tuple of int
        Shape ``(ny, nx)`` of the image in real space.
    shifts : array_like, shape (2,) or (K, 2)
        ``(dy, dx)`` shifts in pixels.
    method : {"fourier", "sinc"}
        Exact phase ramps, or the transforms of windowed-sinc kernels.

    Returns
    -------
    y_factors : numpy.ndarray of complex128
        Shape ``(K, ny)``.
    x_factors : numpy.ndarray of complex128
        Shape ``(K, nx // 2 + 1)``.
    """
    if method == "fourier":
        return fourier_phase_factors(shape, shifts)
    if method != "sinc":
        raise ValueError(f"no spectral factors for shift method {method!r}")
    points = _as_shift_points(shifts)
    y_factors = scipy.fft.fft(_sinc_kernels(shape[0], points[:, 0], SINC_HALF_WIDTH_PX), axis=1)
    x_factors = scipy.fft.rfft(_sinc_kernels(shape[1], points[:, 1], SINC_HALF_WIDTH_PX), axis=1)
    return y_factors, x_factors


def gaussian_transfer(frequencies: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """One axis of the transfer function of circular Gaussians, ``exp(−2π²σ²f²)``.

    A circular Gaussian of variance ``σ²`` (px², per axis) is separable: its
    2-D transfer function is the product of this factor along y and along x.

    Parameters
    ----------
    frequencies : numpy.ndarray
        ``(n,)`` frequencies along the axis, cycles per pixel
        (``numpy.fft.fftfreq`` or ``rfftfreq`` of the padded length).
    variances : numpy.ndarray
        ``(K,)`` variances ``σ²``, px², >= 0 (0: the identity).

    Returns
    -------
    numpy.ndarray of float64
        ``(K, n)`` factors.
    """
    variances = np.asarray(variances, dtype=np.float64)
    if variances.ndim != 1 or not bool(np.all(variances >= 0)):
        raise ValueError(f"blur variances must be a 1-D array of values >= 0, got {variances}")
    f2 = np.asarray(frequencies, dtype=np.float64) ** 2
    return np.exp(-2.0 * np.pi**2 * variances[:, None] * f2[None, :])


#: Floating-point precisions of :class:`SpectralGrid`.
SPECTRAL_PRECISIONS = ("single", "double")

#: Bytes per row chunk of :class:`SpectralGrid`'s element-wise products: a
#: few such chunks stay in a core's cache while a visit's terms are summed into them.
SPECTRAL_CHUNK_BYTES = 1 << 20


class SpectralGrid:
    """Single-precision spectral shifts of the images of one block.

    The block of ``shape`` is zero-padded to ``scipy.fft.next_fast_len`` along
    each axis (unchanged when the size is already a product of 2, 3, 5, 7 and
    11, as 2058 = 2·3·7³); the padding only changes what wraps around within
    the shift reach of the edges, where the periodic shift already put the
    opposite edge. Transforms are ``scipy.fft`` in float32/complex64, one axis
    at a time (the complex axis in place). Element-wise products of spectra
    and separable factors are made by chunks of rows, in preallocated
    buffers, so that no full-size temporary is created per term.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the block in real space.
    """

    def __init__(self, shape: tuple[int, int], precision: str = "single") -> None:
        if precision not in SPECTRAL_PRECISIONS:
            raise ValueError(f"precision must be one of {SPECTRAL_PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.real_dtype = np.dtype(np.float32 if precision == "single" else np.float64)
        self.complex_dtype = np.dtype(np.complex64 if precision == "single" else np.complex128)
        ny, nx = (int(n) for n in shape)
        if ny < 1 or nx < 1:
            raise ValueError(f"a block must have at least one pixel, got shape {shape}")
        self.shape = (ny, nx)
        self.fft_shape = (scipy.fft.next_fast_len(ny), scipy.fft.next_fast_len(nx))
        self.padded = self.fft_shape != self.shape
        self.spectrum_shape = (self.fft_shape[0], self.fft_shape[1] // 2 + 1)
        width = self.spectrum_shape[1]
        itemsize = self.complex_dtype.itemsize
        rows = max(1, min(self.spectrum_shape[0], SPECTRAL_CHUNK_BYTES // (itemsize * width)))
        self.row_chunks = [
            slice(start, min(start + rows, self.spectrum_shape[0]))
            for start in range(0, self.spectrum_shape[0], rows)
        ]
        self._rows = rows
        self._padded_real: np.ndarray | None = None
        self._scratch: tuple[np.ndarray, np.ndarray] | None = None

    def zeros(self, *lead: int) -> np.ndarray:
        """Zeroed complex64 spectra of shape ``(*lead, *spectrum_shape)``."""
        return np.zeros((*lead, *self.spectrum_shape), dtype=self.complex_dtype)

    def transform(self, image: np.ndarray) -> np.ndarray:
        """Real FFT of a ``shape`` image (zero-padded), complex64 ``spectrum_shape``."""
        image = np.asarray(image)
        if image.shape != self.shape:
            raise ValueError(f"image {image.shape} does not match the grid {self.shape}")
        if self.padded:
            if self._padded_real is None:
                self._padded_real = np.zeros(self.fft_shape, dtype=self.real_dtype)
            ny, nx = self.shape
            self._padded_real[:ny, :nx] = image  # the padding stays 0
            real = self._padded_real
        else:
            real = np.ascontiguousarray(image, dtype=self.real_dtype)
        spectrum = scipy.fft.rfft(real, axis=1)
        return scipy.fft.fft(spectrum, axis=0, overwrite_x=True)

    def invert(self, spectrum: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`transform`, float32 ``shape``; ``spectrum`` is overwritten."""
        if spectrum.shape != self.spectrum_shape or spectrum.dtype != self.complex_dtype:
            raise ValueError(
                f"spectrum {spectrum.shape} {spectrum.dtype} does not match the grid"
                f" {self.spectrum_shape} {np.dtype(self.complex_dtype)}"
            )
        half = scipy.fft.ifft(spectrum, axis=0, overwrite_x=True)
        real = scipy.fft.irfft(half, n=self.fft_shape[1], axis=1)
        if self.padded:
            ny, nx = self.shape
            return real[:ny, :nx]
        return real

    def factors(
        self, shifts: np.ndarray | tuple[float, float], method: ShiftMethod, scale: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`shift_factors` on the padded grid, complex64, ``scale`` folded into y.

        One set of :meth:`factor_sets`.
        """
        return self.factor_sets([_as_shift_points(shifts)], method, [scale])[0]

    def factor_sets(
        self,
        point_sets: Sequence[np.ndarray],
        method: ShiftMethod,
        scales: Sequence[float],
        blurs: Sequence[float] | np.ndarray | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`factors` of many sets of shift points, with one transform for all.

        Equal to ``[self.factors(p, method, s) for p, s in zip(point_sets, scales)]``
        (each row of the factors is computed on its own, whatever the batch), at
        the cost of one call instead of one per set.

        Parameters
        ----------
        point_sets : sequence of numpy.ndarray
            Each ``(K_j, 2)`` shifts ``(dy, dx)``, pixels.
        method : {"fourier", "sinc"}
            As :func:`shift_factors`.
        scales : sequence of float
            One scale per set, folded into its y factors.
        blurs : sequence of float, optional
            One variance ``σ²`` per set, px², of a circular Gaussian convolved
            with the shifted image (:func:`gaussian_transfer`, folded into the
            set's y and x factors; 0 leaves the set as it is). None: no blur.

        Returns
        -------
        list of tuple of numpy.ndarray
            ``(y, x)`` factors of each set, complex64 or complex128 as the grid.
        """
        if len(point_sets) != len(scales):
            raise ValueError(f"{len(point_sets)} sets of shift points but {len(scales)} scales")
        if blurs is not None and len(blurs) != len(point_sets):
            raise ValueError(f"{len(point_sets)} sets of shift points but {len(blurs)} blurs")
        if not point_sets:
            return []
        points = [_as_shift_points(p) for p in point_sets]
        counts = [len(p) for p in points]
        y_factors, x_factors = shift_factors(self.fft_shape, np.concatenate(points), method)
        y_factors *= np.repeat(np.asarray(scales, dtype=np.float64), counts)[:, None]
        if blurs is not None:
            variances = np.repeat(np.asarray(blurs, dtype=np.float64), counts)
            y_factors *= gaussian_transfer(np.fft.fftfreq(self.fft_shape[0]), variances)
            x_factors *= gaussian_transfer(np.fft.rfftfreq(self.fft_shape[1]), variances)
        y_sets = np.split(y_factors.astype(self.complex_dtype), np.cumsum(counts)[:-1])
        x_sets = np.split(x_factors.astype(self.complex_dtype), np.cumsum(counts)[:-1])
        return list(zip(y_sets, x_sets, strict=True))

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        if self._scratch is None:
            shape = (self._rows, self.spectrum_shape[1])
            self._scratch = (
                np.empty(shape, dtype=self.complex_dtype),
                np.empty(shape, dtype=self.complex_dtype),
            )
        return self._scratch

    def combine(
        self,
        out: np.ndarray,
        spectra: np.ndarray,
        factor_sets: list[tuple[np.ndarray, np.ndarray]],
    ) -> np.ndarray:
        """``out = Σ_j spectra[j] · Σ_k y_jk ⊗ x_jk``, in place (a forward model).

        ``factor_sets[j]`` is ``(y, x)`` of shapes ``(K_j, ny')``, ``(K_j, nx')``
        from :meth:`factors`.
        """
        phi, tmp = self._buffers()
        for rows in self.row_chunks:
            n = rows.stop - rows.start
            phi_c, tmp_c, out_c = phi[:n], tmp[:n], out[rows]
            for j, (y_factors, x_factors) in enumerate(factor_sets):
                spectrum = spectra[j][rows]
                target = out_c if j == 0 else tmp_c
                if len(y_factors) == 1:
                    np.multiply(spectrum, x_factors[0], out=target)
                    np.multiply(target, y_factors[0, rows, None], out=target)
                else:
                    np.multiply(y_factors[0, rows, None], x_factors[0], out=phi_c)
                    for y_factor, x_factor in zip(y_factors[1:], x_factors[1:], strict=True):
                        np.multiply(y_factor[rows, None], x_factor, out=tmp_c)
                        np.add(phi_c, tmp_c, out=phi_c)
                    np.multiply(phi_c, spectrum, out=target)
                if j > 0:
                    np.add(out_c, tmp_c, out=out_c)
        return out

    def spread(
        self,
        totals: np.ndarray,
        spectrum: np.ndarray,
        factor_sets: list[tuple[np.ndarray, np.ndarray]],
    ) -> np.ndarray:
        """``totals[j] += spectrum · Σ_k y_jk ⊗ x_jk``, in place (a back-projection)."""
        phi, tmp = self._buffers()
        for rows in self.row_chunks:
            n = rows.stop - rows.start
            phi_c, tmp_c = phi[:n], tmp[:n]
            spectrum_c = spectrum[rows]
            for j, (y_factors, x_factors) in enumerate(factor_sets):
                total_c = totals[j][rows]
                if len(y_factors) == 1:
                    np.multiply(spectrum_c, x_factors[0], out=tmp_c)
                    np.multiply(tmp_c, y_factors[0, rows, None], out=tmp_c)
                else:
                    np.multiply(y_factors[0, rows, None], x_factors[0], out=phi_c)
                    for y_factor, x_factor in zip(y_factors[1:], x_factors[1:], strict=True):
                        np.multiply(y_factor[rows, None], x_factor, out=tmp_c)
                        np.add(phi_c, tmp_c, out=phi_c)
                    np.multiply(phi_c, spectrum_c, out=tmp_c)
                np.add(total_c, tmp_c, out=total_c)
        return totals


def sinc_shift(image: np.ndarray, shifts: np.ndarray | tuple[float, float]) -> np.ndarray:
    """Shift an image with the windowed-sinc kernel (compact support, periodic edges).

    Parameters
    ----------
    image : numpy.ndarray
        2-D real image.
    shifts : array_like, shape (2,) or (K, 2)
        ``(dy, dx)`` shifts in pixels; the K shifted images are averaged.

    Returns
    -------
    numpy.ndarray
        The shifted image (float64). A pixel depends only on pixels within
        ``|shift| + SINC_HALF_WIDTH_PX``; near the edges the kernel wraps.
    """
    image = np.asarray(image, dtype=np.float64)
    y_factors, x_factors = shift_factors(image.shape, shifts, "sinc")
    spectrum = np.fft.rfft2(image)
    total = np.zeros_like(spectrum)
    for y_factor, x_factor in zip(y_factors, x_factors, strict=True):
        total += spectrum * y_factor[:, None] * x_factor[None, :]
    return np.fft.irfft2(total / len(y_factors), s=image.shape)


def fourier_shift(image: np.ndarray, shifts: np.ndarray | tuple[float, float]) -> np.ndarray:
    """Shift an image exactly in Fourier space (periodic boundaries).

    Parameters
    ----------
    image : numpy.ndarray
        2-D real image.
    shifts : array_like, shape (2,) or (K, 2)
        ``(dy, dx)`` shifts in pixels, averaged as in :func:`fourier_phase`.

    Returns
    -------
    numpy.ndarray
        The shifted image (float64). Content shifted past one edge re-enters
        at the opposite edge; keep a halo of ``bufferSize`` pixels.
    """
    image = np.asarray(image, dtype=np.float64)
    spectrum = np.fft.rfft2(image)
    return np.fft.irfft2(spectrum * fourier_phase(image.shape, shifts), s=image.shape)


def shift_image(
    image: np.ndarray,
    shifts: np.ndarray | tuple[float, float],
    *,
    method: ShiftMethod = "spline",
    order: int = 3,
    inverse: bool = False,
) -> np.ndarray:
    """Shift an image with the chosen method.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image.
    shifts : array_like, shape (2,) or (K, 2)
        ``(dy, dx)`` shifts in pixels; K points are averaged.
    method : {"spline", "fourier", "sinc"}
        Interpolation method (config field ``shiftMethod``).
    order : int
        Spline order for ``method="spline"``.
    inverse : bool
        Shift by ``-shifts`` instead.

    Returns
    -------
    numpy.ndarray
        The shifted image, float64.
    """
    points = _as_shift_points(shifts)
    if inverse:
        points = -points
    if method == "spline":
        return spline_shift(image, points, order=order)
    if method == "fourier":
        return fourier_shift(image, points)
    if method == "sinc":
        return sinc_shift(image, points)
    raise ValueError(f"unknown shift method {method!r}; choose one of {SHIFT_METHODS}")
