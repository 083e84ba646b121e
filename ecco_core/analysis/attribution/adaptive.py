"""The adaptive integrated-gradients rule: a composite rule that knows its own error.

Along the path x(a) = x0 + a (x - x0) the target f has f'(a) = g(a) . (x - x0), so the
completeness of IG between any two points where f is known is a known number: the rule's
estimate of the integral of f' there, minus f(b) - f(a). The rule

1. scans f with forward passes only on a graded grid (``SCAN_ALPHAS``: near a zero baseline the
   norm layers make f(a x) move on a log scale of a, so the grid is logarithmic below 0.1);
2. places gradient nodes, one batched backward per round, where f moves: the scanned points at
   the ends of the largest changes first, then splits of the worst intervals;
3. integrates each interval between two gradient nodes, or leaves it out (weight 0: its error is
   then -(f(b) - f(a)), exactly), whichever error is smaller, until the whole-path error is under
   ``TOLERANCE`` or the node budget (``n_steps``) is spent.

The integral is taken in u = log a below 0.1 and linearly above (``_u``). For a probability
target f = sigmoid(Z), with Z the log-odds of the token, and g = sigmoid'(Z) grad Z: the sharp
factor sigmoid'(Z) is integrated exactly on a model of Z (piecewise linear in u through every
point where f is known, scanned or not) and only the smooth part grad Z is interpolated between
the nodes (product integration). A probability whose log-odds rises about linearly, from 1e-5
to 0.9 inside a tenth of the path, is then integrated from nodes at the ends of its rise, where a
trapezoid on g needs dozens. The weights
depend on f only, never on the gradients; the completeness error is measured, not rescaled away.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from ...errors import NumericalError
from .context import AttributionContext, report
from .gradients import point_gradients

SCAN_ALPHAS = np.array([0.0, 1e-2, 3e-2, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
"""Where the forward-only scan evaluates f (logarithmic below 0.1, then every 0.1)."""
TOLERANCE = 0.02
"""Whole-path completeness error (relative to |f(x) - f(baseline)|) at which the rule stops."""
LOG_BELOW = 0.1
"""Below this alpha the rule's coordinate is log alpha (``_u``)."""
MIN_ROUND = 4
"""A round asks for at least this many nodes while the budget allows (on SmolLM2 a backward of
one input took 0.40 s, of a batch of eight 0.16 s per input)."""
STEEP = 0.25
"""A scanned interval where f changes by more than this share of the whole gets its middle as a
node in the same round as its ends (a single product interval rarely integrates such a rise)."""
MIN_WIDTH = 1e-7
"""Intervals narrower than this are never split."""
CLIP = 1e-12
"""Probabilities are clipped to [CLIP, 1 - CLIP] before their log-odds are taken."""


def _u(alpha: np.ndarray) -> np.ndarray:
    """The rule's coordinate: log alpha up to ``LOG_BELOW``, then linear with the same slope
    (continuous with its derivative); -inf at alpha 0."""
    alpha = np.asarray(alpha, dtype=np.float64)
    with np.errstate(divide="ignore"):
        low = np.log(np.minimum(alpha, LOG_BELOW))
    return np.where(alpha <= LOG_BELOW, low, np.log(LOG_BELOW) + (alpha - LOG_BELOW) / LOG_BELOW)


def _alpha(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """alpha at u and d alpha / du."""
    edge = np.log(LOG_BELOW)
    alpha = np.where(u <= edge, np.exp(np.minimum(u, edge)), LOG_BELOW + (u - edge) * LOG_BELOW)
    return alpha, np.where(u <= edge, alpha, LOG_BELOW)


@dataclass
class PathRule:
    """The points evaluated on [0, 1] for one target, and the composite rule they give."""

    alphas: np.ndarray
    """(n,) increasing, from 0 to 1."""
    values: np.ndarray
    """(n,) f at ``alphas`` (float64)."""
    slopes: np.ndarray
    """(n,) f'(alpha) = g . (x - x0) where a gradient was computed, NaN elsewhere."""
    probability: bool = False
    """f is a probability: integrate sigmoid'(log-odds) exactly, interpolate only the rest."""

    @classmethod
    def scanned(cls, alphas: np.ndarray, values: np.ndarray, probability: bool = False) -> PathRule:
        alphas = np.asarray(alphas, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        return cls(alphas, values, np.full(len(alphas), np.nan), probability)

    def anchors(self) -> np.ndarray:
        """Indices of alpha 0, of every gradient node and of alpha 1: the ends of the intervals."""
        has = ~np.isnan(self.slopes)
        has[0] = has[-1] = True
        return np.flatnonzero(has)

    def intervals(self) -> tuple[np.ndarray, np.ndarray]:
        """(m,) whether each interval between consecutive anchors is integrated (else left out)
        and (m,) its signed error: estimate minus f(b) - f(a)."""
        ends = self.anchors()
        change = np.diff(self.values[ends])
        left, right = self._end_weights(ends)
        estimate = left * self.slopes[ends[:-1]] + right * self.slopes[ends[1:]]  # NaN: an end has none
        with np.errstate(invalid="ignore"):
            used = np.abs(estimate - change) < np.abs(change)  # False where NaN
        return used, np.where(used, estimate - change, -change)

    @property
    def evaluations(self) -> int:
        """Gradient evaluations so far."""
        return int((~np.isnan(self.slopes)).sum())

    @property
    def change(self) -> float:
        return float(self.values[-1] - self.values[0])

    @property
    def error(self) -> float:
        """The whole path's completeness error, relative to |f(1) - f(0)|."""
        return abs(float(self.intervals()[1].sum())) / max(abs(self.change), 1e-12)

    def weights(self) -> np.ndarray:
        """(n,) the weight of each point's gradient (0 where it has none or no interval uses it)."""
        ends = self.anchors()
        used, _ = self.intervals()
        left, right = self._end_weights(ends)
        weights = np.zeros(len(self.alphas))
        np.add.at(weights, ends[:-1], np.where(used, left, 0.0))
        np.add.at(weights, ends[1:], np.where(used, right, 0.0))
        return weights

    def _end_weights(self, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(m,) weights of each interval's left and right gradients.

        On [a, b] in the coordinate u the integrand g(alpha(u)) alpha'(u) is m(u) s(u), with m the
        sharp factor (sigmoid'(Z) for a probability, else 1) and s smooth; s is interpolated
        linearly between the ends, so the weight of g(a) is alpha'(u_a) / m(u_a) times the
        integral of m against the hat function of a. With m = 1 this is the trapezoid in u.
        """
        left, right = np.zeros(len(ends) - 1), np.zeros(len(ends) - 1)
        u, z = _u(self.alphas), self._log_odds(self.values)
        for k, (i, j) in enumerate(zip(ends[:-1], ends[1:], strict=True)):
            if i == 0:
                continue  # never used: alpha 0 has no gradient
            total, first = _moments(u[i : j + 1], z[i : j + 1] if self.probability else None)
            width = u[j] - u[i]
            to_right = first / width  # integral of m against the hat of b; the rest is a's
            _, slope = _alpha(u[[i, j]])  # d alpha / du at the ends
            sharp = _sharp(z[[i, j]]) if self.probability else np.ones(2)
            left[k] = (total - to_right) * slope[0] / sharp[0]
            right[k] = to_right * slope[1] / sharp[1]
        return left, right

    def _log_odds(self, values: np.ndarray) -> np.ndarray:
        if not self.probability:
            return values
        p = np.clip(values, CLIP, 1 - CLIP)
        return np.log(p) - np.log1p(-p)

    def next_points(self, budget: int, tolerance: float = TOLERANCE) -> np.ndarray:
        """Up to ``budget`` new gradient nodes where the errors are largest, until what is left
        unattended is under half the tolerance (none once the path meets it).

        Consecutive intervals left out count as one stretch (their errors telescope to minus the
        stretch's change), so f moving up and back inside a stretch costs nothing. A stretch or
        interval is refined by gradients at the scanned points inside it that end its changes of
        more than the tolerance or a quarter of its largest (never alpha 0: the gradient at a zero
        input is not finite), else by splitting its largest change. A round takes at least
        ``MIN_ROUND`` nodes while there is error left to attend.
        """
        if budget <= 0 or self.error <= tolerance:
            return np.zeros(0)
        ends = self.anchors()
        used, errors = self.intervals()
        pieces = _pieces(used, errors)  # [(first interval, last interval, error)]
        left = sum(abs(e) for *_, e in pieces)
        has = ~np.isnan(self.slopes)
        wanted: list[float] = []
        for first, last, error in sorted(pieces, key=lambda piece: -abs(piece[2])):
            attended = left <= tolerance * abs(self.change) / 2 and len(wanted) >= min(MIN_ROUND, budget)
            if attended or error == 0:
                break
            lo, hi = ends[first], ends[last + 1]  # point indices bounding the piece
            change = np.abs(np.diff(self.values[lo : hi + 1]))  # (sub-intervals,) between known points
            big = min(max(change.max(), 1e-300) / 4, tolerance * abs(self.change))
            moving = lo + np.flatnonzero(change >= big)
            points = sorted({int(i) for k in moving for i in (k, k + 1)})  # ends of where f moves
            new = [float(self.alphas[i]) for i in points if not has[i] and self.alphas[i] > 0]
            steep = [k for k in moving if change[k - lo] > STEEP * abs(self.change)]
            new += [  # the middle of a steep scanned interval at once
                split_point(self.alphas[k], self.alphas[k + 1]) for k in steep if not (has[k] or has[k + 1])
            ]
            if not new:
                k = lo + int(np.argmax(change))
                a, b = self.alphas[k], self.alphas[k + 1]
                new = [split_point(a, b)] if b - a > MIN_WIDTH else []
            new = [a for a in new if a not in wanted]
            if len(wanted) + len(new) > budget:
                break
            wanted += new
            left -= abs(error)
        return np.array(sorted(wanted))

    def add(self, alphas: np.ndarray, values: np.ndarray, slopes: np.ndarray) -> None:
        """Record gradient nodes (a point already scanned keeps its scanned value)."""
        if not np.isfinite(slopes).all():
            bad = [round(float(a), 6) for a, g in zip(alphas, slopes) if not np.isfinite(g).all()]
            raise NumericalError(
                f"integrated gradients: the model's gradient is not finite at alphas {bad} of the path "
                "from the baseline; try baseline='pad' or quadrature='gauss'."
            )
        for a, v, s in zip(alphas, values, slopes, strict=True):
            at = np.searchsorted(self.alphas, a)
            if at < len(self.alphas) and self.alphas[at] == a:
                if not np.isnan(self.slopes[at]):
                    raise ValueError(f"alpha {a} already has a gradient")
                self.slopes[at] = s
                continue
            self.alphas = np.insert(self.alphas, at, a)
            self.values = np.insert(self.values, at, v)
            self.slopes = np.insert(self.slopes, at, s)


def _sharp(z: np.ndarray) -> np.ndarray:
    """sigmoid'(z) = p (1 - p)."""
    p = 0.5 * (1 + np.tanh(z / 2))
    return p * (1 - p)


def _moments(u: np.ndarray, z: np.ndarray | None) -> tuple[float, float]:
    """The integrals of m and of m (u - u[0]) over [u[0], u[-1]], exactly, where m = sigmoid'(z)
    with z linear in u between the given points (m = 1 where ``z`` is None).

    On a piece where z = z1 + c (u - u1): the integral of sigmoid'(z) is (p2 - p1) / c, and that of
    sigmoid'(z) (u - u1) is (du p2 - (softplus(z2) - softplus(z1)) / c) / c.
    """
    du = np.diff(u)
    if z is None:
        zeroth, first = du, du**2 / 2
    else:
        dz = np.diff(z)
        flat = np.abs(dz) < 1e-3  # nearly constant z: sigmoid' at the middle, to O(dz^2)
        c = np.where(flat, 1.0, dz) / du
        p = 0.5 * (1 + np.tanh(z / 2))
        softplus = np.logaddexp(0.0, z)
        middle = _sharp((z[1:] + z[:-1]) / 2)
        zeroth = np.where(flat, middle * du, np.diff(p) / c)
        first = np.where(flat, middle * du**2 / 2, (du * p[1:] - np.diff(softplus) / c) / c)
    before = u[:-1] - u[0]
    return float(zeroth.sum()), float((first + before * zeroth).sum())


def _pieces(used: np.ndarray, errors: np.ndarray) -> list[tuple[int, int, float]]:
    """(first, last, error) of each integrated interval, and of each stretch of left-out ones."""
    pieces: list[tuple[int, int, float]] = []
    for k, (u, e) in enumerate(zip(used, errors, strict=True)):
        if not u and pieces and pieces[-1][1] == k - 1 and not used[k - 1]:
            pieces[-1] = (pieces[-1][0], k, pieces[-1][2] + float(e))
        else:
            pieces.append((k, k, float(e)))
    return pieces


def split_point(lo: float, hi: float) -> float:
    """Where an interval is split: the middle in u (geometric below ``LOG_BELOW``); from alpha 0,
    a tenth of the way (u is -inf there) inside (0, ``LOG_BELOW``], else half."""
    if lo == 0:
        return hi / 10 if hi <= LOG_BELOW else hi / 2
    return float(_alpha(_u(np.array([lo, hi])).mean())[0])


@dataclass
class AdaptiveResult:
    attribution: torch.Tensor
    """(n_targets, pos, d_model) weighted gradients times (x - x0)."""
    ends: torch.Tensor
    """(2, n_targets) f(x) and f(baseline)."""
    rules: list[PathRule]
    """Each target's points and rule."""


def adaptive_integrated_gradients(
    ctx: AttributionContext,
    x: torch.Tensor,
    x0: torch.Tensor,
    values: Callable[[AttributionContext, torch.Tensor], torch.Tensor],
) -> AdaptiveResult:
    """Integrated gradients of every target of ``ctx`` from ``x0`` to ``x`` (pos, d_model), each
    target on its own points (``values(ctx, embeds)`` is the forward-only target function)."""
    n_t = len(ctx.positions)
    attribution = torch.zeros(n_t, *x.shape, device=x.device, dtype=torch.float32)
    ends = torch.zeros(2, n_t, device=x.device, dtype=torch.float32)
    rules = []
    for i in range(n_t):
        one = replace(
            ctx,
            positions=ctx.positions[i : i + 1],
            target_ids=ctx.target_ids[i : i + 1],
            foil_ids=None if ctx.foil_ids is None else ctx.foil_ids[i : i + 1],
            progress=None,
            memo={},
        )
        length = int(one.positions[0])  # logits at length - 1 read the target
        start, step = x0[:length].float(), (x - x0)[:length].float()  # (length, d)

        def path(alphas: np.ndarray, start=start, step=step) -> torch.Tensor:  # (points, length, d)
            a = torch.tensor(alphas, device=x.device, dtype=torch.float32)[:, None, None]
            return (start[None] + a * step[None]).to(ctx.embeds.dtype)

        scan = values(one, path(SCAN_ALPHAS))[:, 0]  # (alpha,)
        rule = PathRule.scanned(SCAN_ALPHAS, scan.double().cpu().numpy(), probability=ctx.target == "prob")
        grads: dict[float, torch.Tensor] = {}
        while len(new := rule.next_points(ctx.n_steps - rule.evaluations)):
            f, g = point_gradients(one, path(new))  # (points, 1), (1, points, length, d)
            slopes = (g[0] * step[None]).sum((-1, -2))  # (points,) f'(alpha) = g . (x - x0)
            rule.add(new, f[:, 0].double().cpu().numpy(), slopes.double().cpu().numpy())
            grads.update({float(a): g[0, j] for j, a in enumerate(new)})
        weights = rule.weights()
        total = torch.zeros_like(step)
        for a, w in zip(rule.alphas, weights, strict=True):
            if w:
                total += float(w) * grads[float(a)]
        attribution[i, :length] = total * step
        ends[:, i] = scan[[-1, 0]]
        rules.append(rule)
        report(ctx, (i + 1) / n_t)
    return AdaptiveResult(attribution, ends, rules)
