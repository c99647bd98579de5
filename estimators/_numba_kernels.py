"""Optional numba kernels for the fused population passes of :mod:`rectify.estimators.models`.

Imported only through :func:`rectify.estimators.models.fast_kernels`, and only for passes over many
rows (the first use in a process imports numba, about 0.5 s; the compiled code is cached on disk,
``cache=True``). Each kernel takes one block of rows, transposed and C-contiguous (``XT``: (p, m)),
and adds the block's sums to the output arrays; the NumPy code in models.py computes the same sums and
is the reference (tests/test_floor_paths.py checks both to 1e-10).

``logistic_chunks`` and ``ordinal_chunks`` are the parallel passes over a whole frame (``prange`` over
fixed row chunks, each with its own partial sums, added in order by the caller); their exponential is
``vexp`` (vectorised, within 2 ulp of NumPy's), so they equal the serial kernels to ~1e-15.

``fastmath`` allows only re-association and contraction (the sums vectorise): NaN and infinite values
propagate as in NumPy, so a pass over non-finite data is still refused by its caller.

Examples
--------
>>> import numpy as np
>>> XT = np.ones((1, 3)); g, H, S2 = np.zeros(1), np.zeros((1, 1)), np.zeros((1, 1))
>>> logistic_block(XT, np.array([1.0, 0.0, 1.0]), np.empty(0), np.ones(3), g, H, S2, True, True,
...                np.empty(3), np.empty(3), np.empty(3))
>>> g.tolist(), H.tolist(), S2.tolist()
([-0.5], [[0.75]], [[0.75]])
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["logistic_block", "ordinal_block", "logistic_chunks", "ordinal_chunks", "vexp", "gather_probs"]

_FLAGS = {"reassoc", "contract"}


@numba.njit(fastmath=_FLAGS, cache=True)
def _dot3(a, b, c):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i] * c[i]
    return s


@numba.njit(fastmath=_FLAGS, cache=True)
def _dot2(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@numba.njit(fastmath=_FLAGS, cache=True)
def logistic_block(XT, z, w, e, g, H, S2, hessian, meat, r, c, q):  # pragma: no cover - compiled
    """Adds ``sum x w (mu - z)`` to ``g``, ``sum w mu (1 - mu) x x'`` to ``H`` (``hessian``) and
    ``sum (w (mu - z))^2 x x'`` to ``S2`` (``meat``), where ``mu = 1 / (1 + e)`` and ``e = exp(-x'theta)``
    (NumPy's vectorised exponential); ``w`` empty: unweighted. ``r``, ``c``, ``q``: scratch of length
    m. Only the upper triangles of ``H`` and ``S2`` are written."""
    p, m = XT.shape
    weighted = w.shape[0] > 0
    for i in range(m):
        mi = 1.0 / (1.0 + e[i])
        ri = mi - z[i]
        ci = mi * (1.0 - mi)
        if weighted:
            ri *= w[i]
            ci *= w[i]
        r[i] = ri
        c[i] = ci
        q[i] = ri * ri
    for a in range(p):
        xa = XT[a]
        g[a] += _dot2(r, xa)
        for b in range(a, p):
            xb = XT[b]
            if hessian and meat:
                s = 0.0
                t = 0.0
                for i in range(m):
                    xx = xa[i] * xb[i]
                    s += c[i] * xx
                    t += q[i] * xx
                H[a, b] += s
                S2[a, b] += t
            elif hessian:
                H[a, b] += _dot3(c, xa, xb)
            elif meat:
                S2[a, b] += _dot3(q, xa, xb)


@numba.njit(fastmath=_FLAGS, cache=True)
def ordinal_block(XT, PT, w, e, ct, hessian, meat, loglik, g, H, S2, F, pi, q, d, r, D, R):  # pragma: no cover
    """The cumulative-logit sums of ``models._ordinal_block`` for one block: adds the score (beta, then
    tau) to ``g``, the log-likelihood's Hessian to ``H`` (``hessian``) and the scores' outer products
    to ``S2`` (``meat``), upper triangles only. ``e`` (m): ``exp(x'beta)``; ``ct`` (K - 1):
    ``exp(-tau)``, so that ``F_j = logistic(tau_j - x'beta) = 1 / (1 + e ct_j)`` costs one exponential
    per row. Returns ``(ll, bad)``: the log-likelihood sum (0 unless ``loglik``) and the number of
    rows' categories with weight but a probability <= 0. ``F``, ``d``, ``r`` (K - 1, m), ``pi``, ``q``
    (K, m), ``D``, ``R`` (m): scratch."""
    p, m = XT.shape
    K = PT.shape[0]
    J = K - 1
    weighted = w.shape[0] > 0
    ll = 0.0
    bad = 0
    for j in range(J):
        c = ct[j]
        for i in range(m):
            F[j, i] = 1.0 / (1.0 + e[i] * c)
    for k in range(K):
        for i in range(m):
            hi = F[k, i] if k < J else 1.0
            lo = F[k - 1, i] if k > 0 else 0.0
            pik = hi - lo
            pk = PT[k, i]
            pw = pk * w[i] if weighted else pk
            ok = pik > 0
            bad += (not ok) and pk > 0
            pik = pik if ok else 1.0
            pi[k, i] = pik
            q[k, i] = pw / pik if ok else 0.0
    if loglik:
        for k in range(K):
            for i in range(m):
                pk = PT[k, i]
                ll += (pk * w[i] if weighted else pk) * math.log(pi[k, i])
    for i in range(m):
        D[i] = 0.0
        R[i] = 0.0
    for j in range(J):
        s_d = 0.0
        s_diag = 0.0
        s_off = 0.0
        for i in range(m):
            Fj = F[j, i]
            f = Fj * (1.0 - Fj)
            dq = q[j, i] - q[j + 1, i]
            dj = f * dq
            d[j, i] = dj
            D[i] += dj
            s_d += dj
            if hessian:
                q2j = q[j, i] / pi[j, i]
                q2n = q[j + 1, i] / pi[j + 1, i]
                diag = f * (1.0 - 2.0 * Fj) * dq - f * f * (q2j + q2n)
                s_diag += diag
                rj = diag
                if j > 0:  # the off-diagonal term between thresholds j - 1 and j
                    Fp = F[j - 1, i]
                    off = Fp * (1.0 - Fp) * f * q2j
                    s_off += off
                    r[j - 1, i] += off
                    R[i] += 2.0 * off
                    rj += off
                r[j, i] = rj
                R[i] += diag
        g[p + j] += s_d
        if hessian:
            H[p + j, p + j] += s_diag
            if j > 0:
                H[p + j - 1, p + j] += s_off
    if meat:
        for j in range(J):
            for k in range(j, J):
                S2[p + j, p + k] += _dot2(d[j], d[k])
    for a in range(p):
        xa = XT[a]
        g[a] -= _dot2(xa, D)
        if hessian:
            for j in range(J):
                H[a, p + j] -= _dot2(xa, r[j])
            for b in range(a, p):
                H[a, b] += _dot3(R, xa, XT[b])
        if meat:
            for j in range(J):
                S2[a, p + j] -= _dot3(D, xa, d[j])
            for b in range(a, p):
                xb = XT[b]
                s = 0.0
                for i in range(m):
                    s += D[i] * D[i] * xa[i] * xb[i]
                S2[a, b] += s
    return ll, bad


# --- parallel passes: ``prange`` over fixed row chunks, each with its own partial sums ------------------
#
# A pass over a whole frame in one call: every chunk copies a cache-sized block of its rows into its own
# (p, m) buffer, takes the exponential with ``vexp`` (numba's scalar ``math.exp`` costs ~4.7 ns a row, a
# pass's floor ~5 ns) and adds the block kernel's sums to its own slice of the (chunks, ...) outputs.
# The caller fixes the chunks (not the threads) and sums the slices in order: the result does not depend
# on the number of threads.

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 split so that k * _LN2_HI is exact for |k| < 2**11
_LN2_LO = 1.9082149292705877e-10
_ROUND = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer held in the low mantissa bits
_BIAS = 1023 - 0x18000000000000  # exponent bias less the bits of _ROUND
# rows per block inside a chunk: the ordinal kernel's scratch (~20 rows of it) stays in L2 (passes at
# N = 1e6, medians of 15, 2 threads: 8192 rows: verbs logit 23.4, ordinal 70 ms; 4096 -> 2048 rows:
# logistic passes 3.7-5.2 -> 3.5-4.8 ms, ordinal passes 9.7-15.2 -> 9.1-14.4 ms)
_PAR_BLOCK = 2048


@numba.njit(fastmath={"contract"}, cache=True)
def vexp(x, out, kb):
    """``out = exp(x)`` to within 2 ulp, in loops that vectorise (``kb``: scratch of the same length;
    ``out`` may be ``x``). Arguments outside [-708, 709] are clamped (``exp`` there is 3e-308 or
    8e307 instead of 0 or inf); NaN stays NaN.

    Examples
    --------
    >>> x = np.array([-1.0, 0.0, 2.5]); out = np.empty(3)
    >>> vexp(x, out, np.empty(3)); bool(np.allclose(out, np.exp(x), rtol=1e-15, atol=0))
    True
    """
    n = x.shape[0]
    for i in range(n):  # exp(v) = 2^k exp(r), v = k ln 2 + r, |r| <= ln(2) / 2: Taylor to degree 13
        v = x[i]
        v = 709.0 if v > 709.0 else v
        v = -708.0 if v < -708.0 else v
        kd = v * _LOG2E + _ROUND
        kb[i] = kd
        k = kd - _ROUND
        r = (v - k * _LN2_HI) - k * _LN2_LO
        out[i] = 1.0 + r * (1.0 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r * (
            1 / 5040 + r * (1 / 40320 + r * (1 / 362880 + r * (1 / 3628800 + r * (1 / 39916800 + r * (
                1 / 479001600 + r * (1 / 6227020800)))))))))))))
    ki = kb.view(np.int64)
    for i in range(n):
        ki[i] = (ki[i] + _BIAS) << 52  # the bits of 2^k
    for i in range(n):
        out[i] *= kb[i]


@numba.njit(fastmath=_FLAGS, cache=True)
def _fill(cols, ones, start, XT):
    """``XT[k] = cols[k][start:start + m]`` (or 1.0 where ``ones[k]``), m = ``XT.shape[1]``."""
    p, m = XT.shape
    for k in range(p):
        row = XT[k]
        if ones[k]:
            row[:] = 1.0
        else:
            c = cols[k]
            for i in range(m):
                row[i] = c[start + i]


@numba.njit(fastmath=_FLAGS, cache=True)
def _linear(XT, coef, sign, out):
    """``out = sign * coef' XT``."""
    p, m = XT.shape
    for i in range(m):
        out[i] = 0.0
    for k in range(p):
        t = sign * coef[k]
        xk = XT[k]
        for i in range(m):
            out[i] += t * xk[i]


@numba.njit(parallel=True, fastmath=_FLAGS, cache=True)
def logistic_chunks(cols, ones, theta, z, w, bounds, hessian, meat, G, H, S2):  # pragma: no cover
    """:func:`logistic_block` over rows ``bounds[c]:bounds[c + 1]`` of the design held as the columns
    ``cols`` (a tuple of 1-D arrays, the first ``len(theta)`` used; ``ones[k]``: column k is the
    intercept), adding chunk c's sums to ``G[c]``, ``H[c]``, ``S2[c]`` (upper triangles), in parallel
    over the chunks."""
    p = theta.shape[0]
    weighted = w.shape[0] > 0
    for c in numba.prange(bounds.shape[0] - 1):
        lo, hi = bounds[c], bounds[c + 1]
        m0 = min(_PAR_BLOCK, hi - lo)
        m = m0
        XT = np.empty((p, m))
        e, kb, r, cc, q = np.empty(m), np.empty(m), np.empty(m), np.empty(m), np.empty(m)
        s = lo
        while s < hi:
            if hi - s < m:  # the chunk's last, shorter block: scratch of its length
                m = hi - s
                XT = np.empty((p, m))
                e, kb, r, cc, q = np.empty(m), np.empty(m), np.empty(m), np.empty(m), np.empty(m)
            _fill(cols, ones, s, XT)
            _linear(XT, theta, -1.0, e)
            vexp(e, e, kb)
            logistic_block(XT, z[s:s + m], w[s:s + m] if weighted else w, e, G[c], H[c], S2[c], hessian, meat,
                           r, cc, q)
            s += m


@numba.njit(parallel=True, fastmath=_FLAGS, cache=True)
def ordinal_chunks(cols, ones, P, w, beta, ct, bounds, hessian, meat, loglik, G, H, S2, LL, BAD):  # pragma: no cover
    """:func:`ordinal_block` over rows ``bounds[c]:bounds[c + 1]`` of the design ``cols`` / ``ones`` (as in
    :func:`logistic_chunks`) and of the (N, K) label matrix ``P``, adding chunk c's sums to ``G[c]``,
    ``H[c]``, ``S2[c]``, ``LL[c]`` and its count of vanished categories to ``BAD[c]``, in parallel over
    the chunks."""
    p = beta.shape[0]
    K = P.shape[1]
    J = K - 1
    weighted = w.shape[0] > 0
    for c in numba.prange(bounds.shape[0] - 1):
        lo, hi = bounds[c], bounds[c + 1]
        m0 = min(_PAR_BLOCK, hi - lo)
        m = m0
        XT, PT = np.empty((p, m)), np.empty((K, m))
        F, pi, q, d, r, D, R = (np.empty((J, m)), np.empty((K, m)), np.empty((K, m)), np.empty((J, m)),
                                np.empty((J, m)), np.empty(m), np.empty(m))
        e, kb = np.empty(m), np.empty(m)
        s = lo
        while s < hi:
            if hi - s < m:  # the chunk's last, shorter block: scratch of its length (C-contiguous rows)
                m = hi - s
                XT, PT = np.empty((p, m)), np.empty((K, m))
                F, pi, q, d, r, D, R = (np.empty((J, m)), np.empty((K, m)), np.empty((K, m)), np.empty((J, m)),
                                        np.empty((J, m)), np.empty(m), np.empty(m))
                e, kb = np.empty(m), np.empty(m)
            _fill(cols, ones, s, XT)
            for k in range(K):
                for i in range(m):
                    PT[k, i] = P[s + i, k]
            _linear(XT, beta, 1.0, e)
            vexp(e, e, kb)
            lb, bad = ordinal_block(XT, PT, w[s:s + m] if weighted else w, e, ct, hessian, meat, loglik, G[c], H[c],
                                    S2[c], F, pi, q, d, r, D, R)
            LL[c] += lb
            BAD[c] += bad
            s += m


@numba.njit(fastmath=_FLAGS, cache=True, inline="always")
def _fold_row(s, m, mn, lo, hi, bad):  # pragma: no cover - compiled
    """One row (sum ``s``, smallest entry ``m``) folded into a chunk's checks: the smallest entry and the
    row-sum range over rows with a finite sum, and the count of the others."""
    if math.isfinite(s):
        return (m if m < mn else mn), (s if s < lo else lo), (s if s > hi else hi), bad
    return mn, lo, hi, bad + 1


@numba.njit(parallel=True, fastmath=_FLAGS, cache=True)
def prob_rows(P, bounds, out):  # pragma: no cover - compiled
    """For the rows ``bounds[c]:bounds[c + 1]`` of an (N, K) matrix of answer probabilities:
    ``out[c] = (smallest entry, smallest row sum, largest row sum, rows whose sum is not finite)`` (the
    first three over the rows with a finite sum), in parallel over the chunks: one pass for the checks
    that take four in NumPy."""
    K = P.shape[1]
    for c in numba.prange(bounds.shape[0] - 1):
        mn, lo, hi, bad = np.inf, np.inf, -np.inf, 0
        for i in range(bounds[c], bounds[c + 1]):
            s = 0.0
            m = np.inf
            for k in range(K):
                v = P[i, k]
                s += v
                m = v if v < m else m
            mn, lo, hi, bad = _fold_row(s, m, mn, lo, hi, bad)
        out[c, 0], out[c, 1], out[c, 2], out[c, 3] = mn, lo, hi, bad


@numba.njit(parallel=True, fastmath=_FLAGS, cache=True)
def col_sums(P, bounds, out):  # pragma: no cover - compiled
    """``out[c] = P[bounds[c]:bounds[c + 1]].sum(axis=0)`` for an (N, K) matrix, in parallel over the
    chunks."""
    K = P.shape[1]
    for c in numba.prange(bounds.shape[0] - 1):
        for k in range(K):
            s = 0.0
            for i in range(bounds[c], bounds[c + 1]):
                s += P[i, k]
            out[c, k] = s


@numba.njit(parallel=True, fastmath=_FLAGS, cache=True)
def gather_probs(cols, K, bounds, P, out):  # pragma: no cover - compiled
    """Copies the first ``K`` of ``cols`` (a tuple of 1-D arrays, one per answer option; the rest empty
    padding) into the columns of the (N, K) matrix ``P`` and, for the rows ``bounds[c]:bounds[c + 1]``,
    writes ``out[c, :4]`` as :func:`prob_rows` does and ``out[c, 4:4 + K]`` the column sums: the copy,
    the checks and the shares the ordinal start needs in one parallel pass over the columns."""
    for c in numba.prange(bounds.shape[0] - 1):
        mn, lo, hi, bad = np.inf, np.inf, -np.inf, 0
        acc = np.zeros(K)
        for i in range(bounds[c], bounds[c + 1]):
            s = 0.0
            m = np.inf
            for k in range(K):
                v = cols[k][i]
                P[i, k] = v
                acc[k] += v
                s += v
                m = v if v < m else m
            mn, lo, hi, bad = _fold_row(s, m, mn, lo, hi, bad)
        out[c, 0], out[c, 1], out[c, 2], out[c, 3] = mn, lo, hi, bad
        for k in range(K):
            out[c, 4 + k] = acc[k]
