"""FFN neuron activations: NMF / PCA factors (ecco's ``run_nmf``), top neurons, one neuron's trace.

Everything here is a pure function of ``seq.activations`` (layer, neuron, pos); nothing re-runs the
model. Results are dataclasses of numpy arrays that pickle and hold no reference to the run.

On an encoder-decoder, ``side='decoder'`` (the default) reads the decoder's activations and
``side='encoder'`` the encoder's (``seq.side``). Positions then index that stack's own tokens
(``Stack.tokens``): 0 is the first encoder token, or the decoder's start token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from .errors import ComponentsError, EccoError, InputError, NumericalError, PositionError
from .output import OutputSeq

POSITIONS = ("all", "input", "output")
METHODS = ("nmf", "pca")
SIDES = ("decoder", "encoder")


# ----- one stack's data -------------------------------------------------------------------------
@dataclass(frozen=True)
class Stack:
    """One stack's arrays and the tokens along their position axis (see ``stack``)."""

    name: str
    """'encoder' or 'decoder' on an encoder-decoder run; '' on causal and masked LMs."""
    tokens: list[str]
    """pos strings: the tokens along the arrays' position axis."""
    n_input_tokens: int
    """How many of ``tokens`` were not generated (the prompt; all the encoder's; the decoder's start)."""
    activations: np.ndarray | None
    """(layer, neuron, pos) FFN activations, or None."""
    activation_layers: list[int]
    hidden_states: np.ndarray | None
    """(layer + 1, pos, d_model) residual stream, or None."""
    special: np.ndarray | None
    """(pos,) bool special tokens, or None."""

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


def stack(seq: OutputSeq, side: str = "decoder") -> Stack:
    """The arrays of one stack: the encoder's or the decoder's on an encoder-decoder, else the run's."""
    if side not in SIDES:
        raise InputError(f"side must be one of {SIDES}, not {side!r}.")
    data = seq.side(side)  # ModelTypeError for 'encoder' on a model without one
    tokens = list(data["tokens"])
    enc_dec = seq.model_type == "enc-dec"
    offset = seq.state_offset if side == "decoder" else 0
    n_input = len(tokens) if side == "encoder" else min(1, len(tokens)) if enc_dec else seq.n_input_tokens
    special = None if seq.special is None else np.asarray(seq.special, dtype=bool)
    return Stack(
        name=side if enc_dec else "",
        tokens=tokens,
        n_input_tokens=n_input,
        activations=data["activations"],
        activation_layers=list(data["activation_layers"]),
        hidden_states=data["hidden_states"],
        special=None if special is None else special[offset : offset + len(tokens)],  # (pos,)
    )


# ----- selecting the matrix ---------------------------------------------------------------------
def require_activations(seq: OutputSeq, side: str = "decoder") -> np.ndarray:
    """(layer, neuron, pos) activations of ``side``, or an EccoError saying how to capture them."""
    acts = stack(seq, side).activations
    if acts is None or acts.size == 0:
        where = f" of the {side}" if seq.model_type == "enc-dec" else ""
        raise EccoError(
            f"This run has no FFN neuron activations{where}. Run the model again without "
            "activation_layers=[] (the default captures every layer)."
        )
    return acts


def layer_indices(
    seq: OutputSeq, from_layer: int | None = None, to_layer: int | None = None, side: str = "decoder"
) -> list[int]:
    """Indices into ``side``'s activations of the model layers ``from_layer <= layer < to_layer``.

    Layers are model layer numbers (as in ``seq.activation_layers``); ``to_layer`` is exclusive, as
    in ecco. None means from the first / to past the last captured layer.
    """
    require_activations(seq, side)
    layers = stack(seq, side).activation_layers
    low = layers[0] if from_layer is None else int(from_layer)
    high = layers[-1] + 1 if to_layer is None else int(to_layer)
    chosen = [i for i, layer in enumerate(layers) if low <= layer < high]
    if not chosen:
        raise InputError(
            f"No captured layer lies in from_layer={from_layer} .. to_layer={to_layer} (exclusive). "
            f"This run captured layers {layers[0]}..{layers[-1]}."
        )
    return chosen


def position_indices(
    seq: OutputSeq, positions: str = "all", skip_first: bool = False, side: str = "decoder"
) -> np.ndarray:
    """(position,) indices of ``side``'s positions 'all', 'input' (prompt) or 'output' (generated)."""
    if positions not in POSITIONS:
        raise InputError(f"positions must be one of {POSITIONS}, not {positions!r}.")
    view = stack(seq, side)
    start = 1 if skip_first else 0
    low, high = {"all": (0, view.n_tokens), "input": (0, view.n_input_tokens)}.get(
        positions, (view.n_input_tokens, view.n_tokens)
    )
    chosen = np.arange(max(low, start), high)
    if len(chosen) == 0:
        what = "generated tokens" if positions == "output" else "positions"
        where = f" on the {side} side" if view.name else ""
        raise PositionError(
            f"There are no {what}{where} to factorise (positions={positions!r}"
            f"{', first token left out' if skip_first else ''}). Generate some tokens or pick 'all'."
        )
    return chosen


# ----- factorisation ----------------------------------------------------------------------------
@dataclass
class Factorization:
    """NMF (or PCA) factors of FFN activations: ``activations ~ components.T @ loadings``."""

    components: np.ndarray
    """(factor, position) how strongly each factor fires at each chosen position (activation units)."""
    loadings: np.ndarray
    """(factor, layer, neuron) each factor's weight on every neuron; unit L2 norm per factor."""
    positions: np.ndarray
    """(position,) the sequence position of each column of ``components``."""
    tokens: list[str]
    """All tokens of the factorised stack (not only the chosen positions), so its text can be painted."""
    n_input_tokens: int
    layers: list[int]
    """The model layers the loadings' second axis holds."""
    method: str = "nmf"
    """'nmf' (non-negative parts) or 'pca' (signed, centred directions)."""
    fit_error: float = 0.0
    """||X - fit||_F / ||X||_F of the (clipped) neuron x position matrix X (PCA: of centred X)."""
    explained_variance: np.ndarray | None = None
    """(factor,) PCA only: the share of the matrix's variance each component explains."""
    negative_share: float = 0.0
    """Share of the selected activations that were negative (and clipped to 0)."""
    negative_mass: float = 0.0
    """Share of the selected activations' total |value| that was negative (and clipped to 0)."""
    special: np.ndarray | None = field(default=None, repr=False)
    """(pos,) bool special tokens of the run, for painting."""
    side: str = ""
    """'encoder' or 'decoder' on an encoder-decoder run; '' otherwise."""

    @property
    def n_factors(self) -> int:
        return self.components.shape[0]

    @property
    def signed(self) -> bool:
        return self.method == "pca"

    def full_components(self) -> np.ndarray:
        """(factor, pos) components over the whole run; 0 at positions that were not chosen."""
        full = np.zeros((self.n_factors, len(self.tokens)), dtype=np.float32)
        full[:, self.positions] = self.components
        return full

    def strongest_factor(self) -> np.ndarray:
        """(pos,) the factor with the largest value (PCA: largest |value|) at each position; -1 if none."""
        full = self.full_components()
        score = np.abs(full) if self.signed else full
        best = score.argmax(axis=0)
        return np.where(score.max(axis=0) > 0, best, -1)

    def top_neurons(self, factor: int, k: int = 10) -> pd.DataFrame:
        """The ``k`` neurons with the largest loading (PCA: largest |loading|) on ``factor``."""
        if not 0 <= factor < self.n_factors:
            raise InputError(f"factor must be in 0..{self.n_factors - 1}, not {factor}.")
        flat = self.loadings[factor].ravel()  # (layer * neuron,)
        score = np.abs(flat) if self.signed else flat
        order = top_indices(score, k)
        layer_pos, neuron = np.unravel_index(order, self.loadings.shape[1:])
        return pd.DataFrame(
            {
                "factor": factor,
                "layer": np.asarray(self.layers)[layer_pos],
                "neuron": neuron,
                "loading": flat[order].astype(float),
            }
        )

    def explore(self, top_k: int = 10) -> dict:
        """JSON-ready data for the factor explorer: tokens, factor values per token, top neurons."""
        return {
            "method": self.method,
            "side": self.side,
            "tokens": list(self.tokens),
            "n_input_tokens": int(self.n_input_tokens),
            "positions": self.positions.tolist(),
            "layers": list(self.layers),
            "factors": self.full_components().astype(float).tolist(),
            "strongest_factor": self.strongest_factor().tolist(),
            "top_neurons": [self.top_neurons(f, top_k).to_dict("records") for f in range(self.n_factors)],
        }

    def to_frame(self) -> pd.DataFrame:
        """Long table of the factor matrix: one row per (factor, position)."""
        factors, cols = np.meshgrid(np.arange(self.n_factors), np.arange(len(self.positions)), indexing="ij")
        positions = self.positions[cols.ravel()]
        return pd.DataFrame(
            {
                "factor": factors.ravel(),
                "position": positions,
                "token": [self.tokens[p] for p in positions],
                "value": self.components.ravel().astype(float),
            }
        )

    def loadings_frame(self) -> pd.DataFrame:
        """Wide table of the loadings: one row per (layer, neuron), one column per factor."""
        n_layers, n_neurons = self.loadings.shape[1:]
        frame = pd.DataFrame(
            {
                "layer": np.repeat(np.asarray(self.layers), n_neurons),
                "neuron": np.tile(np.arange(n_neurons), n_layers),
            }
        )
        for f in range(self.n_factors):
            frame[f"factor_{f}"] = self.loadings[f].ravel()
        return frame

    def to_dict(self) -> dict:
        """JSON-ready summary: the factor matrix, fit and clipping figures, top neurons per factor.

        The full loadings (factor x layer x neuron) are in ``loadings`` / ``loadings_frame()``.
        """
        data = self.explore()
        data.update(
            components=self.components.astype(float).tolist(),
            fit_error=float(self.fit_error),
            negative_share=float(self.negative_share),
            negative_mass=float(self.negative_mass),
            explained_variance=None
            if self.explained_variance is None
            else self.explained_variance.astype(float).tolist(),
        )
        return data

    def clipping_note(self) -> str:
        """What clipping negatives to 0 meant for this run, in words a reader can act on."""
        share, mass = 100 * self.negative_share, 100 * self.negative_mass
        if share == 0:
            return "No activation was negative, so nothing was clipped before factorising."
        head = f"{share:.0f}% of these activations were negative ({mass:.0f}% of their total size) and "
        head += "were set to 0 first, ecco's convention, because NMF needs non-negative numbers."
        if mass < 5:
            return head + " That is little (GELU-like neurons dip only slightly below 0)."
        return head + (
            " In a gated FFN (SwiGLU, as in Llama and SmolLM) a neuron's value is silu(gate) x up and "
            "its sign carries meaning, so these factors describe only the positive half of each "
            "neuron's firing." + ("" if self.signed else " PCA shows both signs.")
        )

    def figure(self) -> go.Figure:
        """Factor x position heatmap."""
        from .figures.neurons import factor_heatmap

        return factor_heatmap(self)


def top_indices(values: np.ndarray, k: int) -> np.ndarray:
    """(k,) indices of the ``k`` largest of ``values`` (1-D), largest first; ties by lower index."""
    k = min(int(k), len(values))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-values, k - 1)[:k] if k < len(values) else np.arange(len(values))
    return part[np.lexsort((part, -values[part]))]


def activation_matrix(
    seq: OutputSeq, layer_idx: list[int], positions: np.ndarray, side: str = "decoder"
) -> tuple[np.ndarray, float, float]:
    """(layer * neuron, position) clipped activations, plus the negative share and mass clipped."""
    acts = require_activations(seq, side)[layer_idx][:, :, positions]  # (layer, neuron, position)
    matrix = acts.reshape(-1, len(positions)).astype(np.float64)  # (layer * neuron, position)
    negative = matrix < 0
    total = np.abs(matrix).sum()
    mass = float(-matrix[negative].sum() / total) if total > 0 else 0.0
    return np.clip(matrix, 0, None), float(negative.mean()), mass


def check_components(n_components: int, n_positions: int, n_features: int) -> None:
    if n_components < 1:
        raise ComponentsError(f"n_components must be at least 1, not {n_components}.")
    if n_components > n_positions:
        raise ComponentsError(
            f"n_components={n_components} is more factors than the {n_positions} positions being "
            f"factorised; pick at most {n_positions} (or a longer text)."
        )
    if n_components > n_features:
        raise ComponentsError(
            f"n_components={n_components} is more factors than the {n_features} neurons selected; "
            f"pick at most {n_features} (or more layers)."
        )


def run_nmf(
    seq: OutputSeq,
    n_components: int = 10,
    from_layer: int | None = None,
    to_layer: int | None = None,
    positions: str = "all",
    method: str = "nmf",
    skip_first: bool = False,
    side: str = "decoder",
) -> Factorization:
    """Factorise the FFN activations into ``n_components`` patterns over the text (ecco's ``run_nmf``).

    The matrix is (neurons of the chosen layers) x (chosen positions) with negatives clipped to 0
    (ecco's convention). NMF (HALS from an NNDSVDa start, float32: deterministic) finds
    non-negative parts; ``method='pca'`` gives signed principal components of the same matrix.
    Factors come sorted by their share of the fit, largest first.

    Args:
        seq: the run.
        n_components: number of factors, at most the number of positions and of neurons.
        from_layer, to_layer: model layers ``from_layer <= layer < to_layer`` (ecco's slicing).
        positions: 'all', 'input' (prompt) or 'output' (generated tokens).
        method: 'nmf' or 'pca'.
        skip_first: leave out position 0, whose activations are often 10-100x the others
            (the attention-sink token) and otherwise take a factor of their own.
        side: encoder-decoders: 'decoder' or 'encoder' activations (positions index that side).

    Raises:
        ComponentsError, InputError, PositionError, NumericalError.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, not {method!r}.")
    view = stack(seq, side)
    layer_idx = layer_indices(seq, from_layer, to_layer, side)
    chosen = position_indices(seq, positions, skip_first, side)
    matrix, neg_share, neg_mass = activation_matrix(seq, layer_idx, chosen, side)
    check_components(int(n_components), matrix.shape[1], matrix.shape[0])
    fit = _fit_pca if method == "pca" else _fit_nmf
    components, loadings, error, explained = fit(matrix.T, int(n_components))  # (factor, position)
    n_neurons = view.activations.shape[1]
    return Factorization(
        components=components.astype(np.float32),
        loadings=loadings.reshape(len(components), len(layer_idx), n_neurons).astype(np.float32),
        positions=chosen,
        tokens=view.tokens,
        n_input_tokens=view.n_input_tokens,
        layers=[view.activation_layers[i] for i in layer_idx],
        method=method,
        fit_error=error,
        explained_variance=explained,
        negative_share=neg_share,
        negative_mass=neg_mass,
        special=view.special,
        side=view.name,
    )


def _fit_nmf(data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float, None]:
    """data (position, feature) >= 0 -> components (k, position), unit loadings (k, feature).

    Deterministic HALS (hierarchical alternating least squares) in float32, started from NNDSVDa
    computed through the small (position x position) Gram matrix. The feature side has ~46k
    columns and the position side ~40 rows, so each sweep is two thin matmuls plus k row updates;
    it reaches scikit-learn's coordinate-descent fit (same loss, same init) in ~60 sweeps.
    """
    norm = float(np.linalg.norm(data))
    if norm == 0:
        raise NumericalError(
            "Every selected activation is 0 or negative, so NMF has nothing to factorise. "
            "Pick other layers or positions, or use PCA."
        )
    scaled = np.ascontiguousarray(data / norm, dtype=np.float32)  # (position, feature), unit norm
    scores, parts = _hals(scaled, k)  # (position, k), (k, feature)
    error = float(np.linalg.norm(scaled - scores @ parts))
    size = np.linalg.norm(parts, axis=1).astype(np.float64)  # (k,)
    size = np.where(size > 0, size, 1.0)
    components = (scores * size * norm).T  # (k, position), activation units
    loadings = parts / size[:, None]  # (k, feature), unit length
    order = np.argsort(-np.linalg.norm(components, axis=1), kind="stable")
    return components[order], loadings[order], error, None


NMF_MAX_SWEEPS = 300
NMF_TOL = 1e-6
"""Stop when a sweep lowers the relative fit error by less than this fraction of it (on average
over the sweeps between two checks)."""
NMF_CHECK_EVERY = 4
"""Sweeps between two fit-error checks."""


def _nndsvda(data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """NNDSVDa start (Boutsidis & Gallopoulos; zeros set to the mean) via the position Gram matrix.

    Args:
        data: (position, feature) non-negative float32.
        k: number of factors.

    Returns:
        scores (position, k) and parts (k, feature), float32.
    """
    gram = (data @ data.T).astype(np.float64)  # (position, position)
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(-evals, kind="stable")[:k]
    sing = np.sqrt(np.clip(evals[order], 0, None))  # (k,)
    left = evecs[:, order]  # (position, k)
    right = (data.T @ left.astype(np.float32)).T / np.where(sing > 0, sing, 1)[:, None]  # (k, feature)
    scores = np.zeros((data.shape[0], k))
    parts = np.zeros((k, data.shape[1]))
    for j in range(k):
        u, v = left[:, j], right[j].astype(np.float64)
        pos_u, neg_u, pos_v, neg_v = np.maximum(u, 0), np.maximum(-u, 0), np.maximum(v, 0), np.maximum(-v, 0)
        n_pu, n_nu = np.linalg.norm(pos_u), np.linalg.norm(neg_u)
        n_pv, n_nv = np.linalg.norm(pos_v), np.linalg.norm(neg_v)
        u, v, sigma = (
            (pos_u, pos_v, n_pu * n_pv) if n_pu * n_pv >= n_nu * n_nv else (neg_u, neg_v, n_nu * n_nv)
        )
        if sigma > 0:
            scale = np.sqrt(sing[j] * sigma)
            scores[:, j] = scale * u / np.linalg.norm(u)
            parts[j] = scale * v / np.linalg.norm(v)
    mean = float(data.mean())
    scores[scores == 0] = mean
    parts[parts == 0] = mean
    return scores.astype(np.float32), parts.astype(np.float32)


def _hals(data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit data (position, feature) ~ scores (position, k) @ parts (k, feature), both >= 0.

    The wide side (parts, ~46k features) runs in torch (its thin matmuls and row updates are 2-4x
    faster than numpy's here); the fit error, which needs float64, is checked every few sweeps.
    """
    scores, parts = _nndsvda(data, k)
    x = torch.from_numpy(data)  # (position, feature)
    x_t = x.T.contiguous()  # (feature, position)
    scores_t, parts_t = torch.from_numpy(scores), torch.from_numpy(parts)  # share memory
    total = float(np.square(data, dtype=np.float64).sum())
    tiny = np.float32(1e-12)
    previous = np.inf
    for sweep in range(NMF_MAX_SWEEPS):
        data_parts = (parts_t @ x_t).T.numpy()  # (position, k)
        parts_gram = (parts_t @ parts_t.T).numpy()  # (k, k)
        for _ in range(6):  # the score side is tiny: several passes cost nothing
            for j in range(k):
                step = (data_parts[:, j] - scores @ parts_gram[:, j]) / max(parts_gram[j, j], tiny)
                scores[:, j] = np.maximum(scores[:, j] + step, tiny)
        scores_data = scores_t.T @ x  # (k, feature)
        scores_gram = scores_t.T @ scores_t  # (k, k)
        diagonal = scores_gram.diagonal().tolist()
        for _ in range(2):
            for j in range(k):
                if diagonal[j] > 0:  # parts[j] += (scores_data[j] - scores_gram[j] @ parts) / gram[j, j]
                    step = torch.addmv(scores_data[j], parts_t.T, scores_gram[j], alpha=-1)
                    parts_t[j].add_(step, alpha=1 / diagonal[j]).clamp_min_(0)
        if (sweep + 1) % NMF_CHECK_EVERY and sweep + 1 < NMF_MAX_SWEEPS:
            continue
        fit = float(torch.dot(scores_data.ravel().double(), parts_t.ravel().double()))
        model = float((scores_gram.double() * (parts_t @ parts_t.T).double()).sum())
        error = np.sqrt(max(total - 2 * fit + model, 0.0) / total)
        if previous - error < NMF_TOL * NMF_CHECK_EVERY * previous:
            break
        previous = error
    return scores, parts


def _fit_pca(data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """data (position, feature) -> signed scores (k, position), unit loadings (k, feature)."""
    centred = data - data.mean(axis=0)  # (position, feature)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)  # u (position, r), vt (r, feature)
    total = float((s**2).sum())
    if total == 0:
        raise NumericalError(
            "The selected activations do not vary across positions: PCA has nothing to show."
        )
    signs = np.sign(vt[:k][np.arange(k), np.abs(vt[:k]).argmax(axis=1)])  # (k,) largest loading > 0
    signs = np.where(signs == 0, 1.0, signs)
    components = (u[:, :k] * s[:k] * signs).T  # (k, position)
    loadings = vt[:k] * signs[:, None]  # (k, feature)
    error = float(np.sqrt(max(total - (s[:k] ** 2).sum(), 0.0) / total))
    return components, loadings, error, (s[:k] ** 2) / total


# ----- single neurons ---------------------------------------------------------------------------
@dataclass
class TopNeurons:
    """The most active neurons at one position."""

    position: int
    token: str
    layers: np.ndarray
    """(k,) model layer of each neuron, most active first."""
    neurons: np.ndarray
    """(k,) neuron index within its layer."""
    values: np.ndarray
    """(k,) activation value."""
    above_mean: np.ndarray
    """(k,) activation minus the neuron's mean over the run's positions."""
    relative: bool = False
    """True: ranked by ``above_mean`` (what is special about this token); False: by ``values``."""
    side: str = ""
    """'encoder' or 'decoder' on an encoder-decoder run (``position`` indexes that side's tokens)."""

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"rank": np.arange(1, len(self.values) + 1), "layer": self.layers, "neuron": self.neurons}
            | {"activation": self.values.astype(float), "above_mean": self.above_mean.astype(float)}
        )

    def to_dict(self) -> dict:
        return {
            "position": int(self.position),
            "side": self.side,
            "token": self.token,
            "relative": bool(self.relative),
            "neurons": self.to_frame().to_dict("records"),
        }

    def figure(self) -> go.Figure:
        from .figures.neurons import top_neurons_bar

        return top_neurons_bar(self)


def check_position(seq: OutputSeq, position: int, side: str = "decoder") -> int:
    """``position`` (negative from the end) as an index into ``side``'s tokens, or a PositionError."""
    view = stack(seq, side)
    position = int(position)
    if position < 0:
        position += view.n_tokens
    if not 0 <= position < view.n_tokens:
        where = f" (an index into the {side}'s {view.n_tokens} tokens)" if view.name else ""
        raise PositionError(f"position must be in 0..{view.n_tokens - 1}{where} (or negative from the end).")
    return position


def top_neurons(
    seq: OutputSeq,
    position: int,
    k: int = 20,
    from_layer: int | None = None,
    to_layer: int | None = None,
    relative: bool = False,
    side: str = "decoder",
) -> TopNeurons:
    """The ``k`` neurons (over the chosen layers) with the largest activation at ``position``.

    With ``relative=True`` they are ranked by activation minus the neuron's mean over the run, which
    hides neurons that are large everywhere (common in the last layers) and shows what fires for
    this token in particular. On an encoder-decoder ``position`` indexes ``side``'s tokens.
    """
    if int(k) < 1:
        raise InputError(f"k must be at least 1, not {k}.")
    view = stack(seq, side)
    position = check_position(seq, position, side)
    layer_idx = layer_indices(seq, from_layer, to_layer, side)
    acts = require_activations(seq, side)[layer_idx]  # (layer, neuron, pos)
    at_pos = acts[:, :, position].ravel()  # (layer * neuron,)
    above = at_pos - acts.mean(axis=2).ravel()  # (layer * neuron,)
    order = top_indices(above if relative else at_pos, int(k))
    layer_pos, neuron = np.unravel_index(order, acts.shape[:2])
    return TopNeurons(
        position=position,
        token=view.tokens[position],
        layers=np.asarray([view.activation_layers[i] for i in layer_idx])[layer_pos],
        neurons=neuron.astype(np.int64),
        values=at_pos[order].astype(np.float32),
        above_mean=above[order].astype(np.float32),
        relative=bool(relative),
        side=view.name,
    )


@dataclass
class NeuronTrace:
    """One neuron's activation at every position of the run."""

    layer: int
    neuron: int
    values: np.ndarray
    """(pos,) activation of the neuron at each position."""
    tokens: list[str]
    n_input_tokens: int

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"position": np.arange(len(self.values)), "token": self.tokens, "activation": self.values}
        )

    def to_dict(self) -> dict:
        return {
            "layer": int(self.layer),
            "neuron": int(self.neuron),
            "tokens": list(self.tokens),
            "activation": self.values.astype(float).tolist(),
        }

    def figure(self) -> go.Figure:
        from .figures.neurons import neuron_trace_figure

        return neuron_trace_figure(self)


def neuron_activations(seq: OutputSeq, layer: int, neuron: int, side: str = "decoder") -> NeuronTrace:
    """The activation of neuron ``neuron`` of model layer ``layer`` across ``side``'s positions."""
    acts = require_activations(seq, side)
    view = stack(seq, side)
    layers = view.activation_layers
    if int(layer) not in layers:
        where = f" on the {side} side" if view.name else ""
        raise InputError(
            f"Layer {layer} was not captured; this run has layers {layers[0]}..{layers[-1]}{where}."
        )
    if not 0 <= int(neuron) < acts.shape[1]:
        raise InputError(f"neuron must be in 0..{acts.shape[1] - 1}, not {neuron}.")
    values = acts[layers.index(int(layer)), int(neuron)]  # (pos,)
    return NeuronTrace(int(layer), int(neuron), values.astype(np.float32), view.tokens, view.n_input_tokens)
