"""Exact integer factorisations ``Z = P Q^T / d`` of product and error tables (DESIGN.md section 2).

Every form here is *integer-exact*: ``P`` and ``Q`` hold integers, ``d`` is a positive integer and
``P @ Q.T == d * Z`` holds in exact integer arithmetic (checked before a form is returned).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import gcd, lcm

import numpy as np
import scipy.linalg


@dataclass(frozen=True, eq=False)
class Form:
    """One exact way of writing a product table as a sum of rank-one terms.

    ``T[u, v] == (P[u] . Q[v]) / denom`` for every code pair; each column ``r`` of ``P``/``Q`` becomes one
    channel block of the emulating convolution (``p_r[x]`` as input, ``q_r[w]`` as weight).

    Args:
        kind: ``w-split`` (one term per weight code), ``a-split`` (per activation code) or ``low-rank``.
        base: ``table`` (terms of ``T`` itself) or ``error`` (terms of ``E`` plus one exact term ``u v``).
        p: int64 ``(|A|, R)`` activation-side factors, indexed by ``code - a_min``.
        q: int64 ``(|W|, R)`` weight-side factors, indexed by ``code - w_min``.
        denom: positive integer dividing the accumulated sum.
        w_col: for ``w-split``, the weight index each term belongs to (-1: always needed); else None.
        bound: ``max_{u,v} sum_r |P[u,r] Q[v,r]|``, bounds one product's share of any partial sum.
    """

    kind: str
    base: str
    p: np.ndarray
    q: np.ndarray
    denom: int
    w_col: np.ndarray | None
    bound: float

    @property
    def rank(self) -> int:
        return int(self.p.shape[1])

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.base}"


def _bound(p: np.ndarray, q: np.ndarray) -> float:
    if p.shape[1] == 0:
        return 0.0
    return float((np.abs(p).astype(np.float64) @ np.abs(q).astype(np.float64).T).max()) * (1 + 1e-9)


def make_form(kind: str, base: str, p: np.ndarray, q: np.ndarray, denom: int = 1,
              w_col: np.ndarray | None = None) -> Form:
    """Build a `Form`, computing its magnitude bound."""
    p = np.ascontiguousarray(p, dtype=np.int64)
    q = np.ascontiguousarray(q, dtype=np.int64)
    return Form(kind, base, p, q, int(denom), w_col, _bound(p, q))


def check_form(form: Form, table: np.ndarray) -> bool:
    """Exact check ``P Q^T == denom * table``: in int64 where the form's magnitude bound keeps every partial
    sum below 2^62, else in Python integers (no overflow possible either way)."""
    table = np.asarray(table)
    if form.p.shape[0] != table.shape[0] or form.q.shape[0] != table.shape[1]:
        return False
    if not form.rank:
        return not table.any()
    exact_int64 = form.bound < 2**62 and np.abs(table).max() * form.denom < 2**62
    kind = np.int64 if exact_int64 else object
    prod = form.p.astype(kind) @ form.q.astype(kind).T
    return bool(np.array_equal(prod, table.astype(kind) * form.denom))


def weight_split(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Terms ``z[:, v] x 1[w == v]`` for the non-zero columns ``v`` of `z`. Returns (P, Q, columns)."""
    cols = np.flatnonzero(np.any(z != 0, axis=0))
    q = np.zeros((z.shape[1], cols.size), dtype=np.int64)
    q[cols, np.arange(cols.size)] = 1
    return z[:, cols], q, cols


def activation_split(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Terms ``1[x == u] x z[u, :]`` for the non-zero rows ``u`` of `z`. Returns (P, Q)."""
    rows = np.flatnonzero(np.any(z != 0, axis=1))
    p = np.zeros((z.shape[0], rows.size), dtype=np.int64)
    p[rows, np.arange(rows.size)] = 1
    return p, z[rows, :].T


def _solve_exact(m: np.ndarray, b: np.ndarray) -> list[list[Fraction]] | None:
    """Solve ``m X = b`` exactly (Gauss-Jordan over the rationals); None when `m` is singular."""
    r = m.shape[0]
    rows = [[Fraction(int(v)) for v in m[i]] + [Fraction(int(v)) for v in b[i]] for i in range(r)]
    for c in range(r):
        piv = next((i for i in range(c, r) if rows[i][c] != 0), None)
        if piv is None:
            return None
        rows[c], rows[piv] = rows[piv], rows[c]
        inv = 1 / rows[c][c]
        rows[c] = [v * inv for v in rows[c]]
        for i in range(r):
            f = rows[i][c]
            if i != c and f != 0:
                pivot_row = rows[c]
                rows[i] = [a - f * bb for a, bb in zip(rows[i], pivot_row, strict=True)]
    return [row[r:] for row in rows]


def _greedy_pivots(sub: np.ndarray, rank: int) -> np.ndarray:
    """Independent columns picked smallest-magnitude first (small pivots give small factors)."""
    order = np.lexsort((np.arange(sub.shape[1]), np.abs(sub).max(axis=0)))
    chosen: list[int] = []
    for c in order:
        trial = chosen + [int(c)]
        if np.linalg.matrix_rank(sub[:, trial]) == len(trial):
            chosen = trial
            if len(chosen) == rank:
                break
    return np.sort(np.array(chosen, dtype=np.int64))


def _qr_pivots(sub: np.ndarray, rank: int) -> np.ndarray:
    _, piv = scipy.linalg.qr(sub, pivoting=True, mode="r")
    return np.sort(piv[:rank])


def _content(values: list[Fraction]) -> Fraction:
    """gcd of the numerators over lcm of the denominators (0 for a zero vector)."""
    num = gcd(*(v.numerator for v in values))
    return Fraction(num, lcm(*(v.denominator for v in values))) if num else Fraction(0)


def _skeleton(zi: np.ndarray, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """``zi = zi[:, j] M^{-1} zi[i, :]`` as integer ``(P, Q, d)`` with per-term contents normalised."""
    x = _solve_exact(zi[np.ix_(i, j)], zi[i, :])
    if x is None:
        return None
    p_cols, q_cols = [], []
    for r, q_row in enumerate(x):  # term r: zi[:, j[r]] (x) q_row
        cq = _content(q_row)
        if cq == 0:
            continue
        p_row = [Fraction(int(v)) * cq for v in zi[:, j[r]]]
        cp = _content(p_row)
        p_cols.append((cp, [v / cp for v in p_row]))
        q_cols.append([v / cq for v in q_row])
    denom = lcm(*(cp.denominator for cp, _ in p_cols)) if p_cols else 1
    if denom >= 2**62:
        return None
    p = np.array([[int(v * cp * denom) for v in col] for cp, col in p_cols], dtype=object).T
    q = np.array([[int(v) for v in col] for col in q_cols], dtype=object).T
    if p.size and max(abs(int(v)) for v in np.concatenate([p.ravel(), q.ravel()])) >= 2**62:
        return None
    return p.reshape(zi.shape[0], -1).astype(np.int64), q.reshape(zi.shape[1], -1).astype(np.int64), denom


def low_rank(z: np.ndarray, max_rank: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Exact factorisation ``d z = P Q^T`` with ``R = rank(z)`` integer terms, or None.

    Skeleton factorisations ``z = z[:, J] M^{-1} z[I, :]`` (``M = z[I, J]``) are solved in exact
    rationals for pivots from pivoted QR and from a smallest-magnitude-first greedy choice, on `z` and on
    ``z^T``; each term's rational content is moved to one side and ``d`` is the common denominator.
    The candidate with the smallest magnitude bound that passes the exact integer check is returned.
    Returns None when ``rank > max_rank`` or no candidate verifies (e.g. a wrong float rank).

    Args:
        z: integer matrix.
        max_rank: give up above this rank (exact rational elimination costs ``O(R^2 |W|)``).

    Returns:
        ``(P, Q, d)`` with int64 ``P`` of shape ``(rows, R)``, ``Q`` of shape ``(cols, R)``, or None.
    """
    rows = np.flatnonzero(np.any(z != 0, axis=1))
    cols = np.flatnonzero(np.any(z != 0, axis=0))
    if rows.size == 0:
        return np.zeros((z.shape[0], 0), np.int64), np.zeros((z.shape[1], 0), np.int64), 1
    zi = z[np.ix_(rows, cols)]
    rank = int(np.linalg.matrix_rank(zi.astype(np.float64)))
    if rank > max_rank:
        return None
    candidates = []
    for transpose in (False, True):
        zt = zi.T if transpose else zi
        sub = zt.astype(np.float64)
        for pick in (_qr_pivots, _greedy_pivots):
            j = pick(sub, rank)
            i = pick(sub[:, j].T, rank)
            found = _skeleton(zt, i, j)
            if found is None:
                continue
            p, q, denom = found if not transpose else (found[1], found[0], found[2])
            candidates.append(make_form("low-rank", "check", p, q, denom))
    best = next((f for f in sorted(candidates, key=lambda f: f.bound) if check_form(f, zi)), None)
    if best is None:
        return None
    p = np.zeros((z.shape[0], best.rank), np.int64)
    p[rows] = best.p
    q = np.zeros((z.shape[1], best.rank), np.int64)
    q[cols] = best.q
    return p, q, best.denom
