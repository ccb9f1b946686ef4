"""docs/score.md, computed by a plain reference, against each of its three implementations.

The reference follows the page's steps row by row in float64 with Python loops; the implementations
(numpy `row_scores`, torch `_Scorer`, the linear ONNX scorer) must agree with it to float32
rounding for every combination of scale, pool, reduction, neighbors, relative and detail.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from latentserve_core.manifest import DetailSpec, NeighborsSpec, ScoreSpec
from latentserve_core.runtime.base import Detail, row_scores
from training.onnx_linear import build_linear_graphs

F32 = npt.NDArray[np.float32]
ROW_SHAPE = (4, 5, 2)  # H, W, C: small images with two channels
D = int(np.prod(ROW_SHAPE))
K_NEIGHBORS, TOPK = 3, 7
RTOL = 2e-5  # float32 against float64
NEIGHBORS_WEIGHT = 0.37  # a neighbors.weight that is not 1
M_DETAIL = 2  # the detail term's further directions
PRIMARY_WEIGHT, DETAIL_WEIGHT = 1.7, 0.6  # detail.primary_weight and detail.weight, neither 1


def _pool(e: list[float], spec: ScoreSpec) -> list[float]:
    """Step 2: window means, zeros outside, divisor P * P."""
    if spec.pool is not None and spec.pool > 1:
        assert spec.image_shape is not None
        H, W, C = spec.image_shape
        r = spec.pool // 2

        def at(h: int, w: int, c: int) -> float:
            return e[(h * W + w) * C + c] if 0 <= h < H and 0 <= w < W else 0.0

        e = [
            sum(at(h + dh, w + dw, c) for dh in range(-r, r + 1) for dw in range(-r, r + 1)) / spec.pool**2
            for h in range(H)
            for w in range(W)
            for c in range(C)
        ]
    return e


def _nearest(z: list[float], R: list[list[float]], k: int, d: int) -> float:
    """Step 4 before its weight: the mean of the k smallest squared distances, / d."""
    distances = sorted(sum((zi - ri) ** 2 for zi, ri in zip(z, row, strict=True)) for row in R)
    return sum(distances[:k]) / len(distances[:k]) / d


def reference_score(
    x: list[float],
    x_hat: list[float],
    spec: ScoreSpec,
    z: list[float],
    R: list[list[float]],
    C: list[list[float]] | None = None,
    Rx: list[list[float]] | None = None,
) -> float:
    """One row's score, step by step as docs/score.md writes it (C, Rx: the detail term's
    directions and reference codes along them)."""
    d = len(x)
    scale = spec.scale or [1.0] * d
    err = [(x[i] - x_hat[i]) / scale[i] for i in range(d)]  # 1. error
    e = _pool(err, spec)  # 2. pooling
    squares = sorted(v * v for v in e)  # 3. reduction
    if spec.reduction == "topk" and spec.topk is not None:
        squares = squares[-spec.topk :]
    score = sum(squares) / len(squares)
    if spec.neighbors is not None:  # 4. neighbors
        weight = 1.0 if spec.neighbors.weight is None else spec.neighbors.weight
        score += weight * _nearest(z, R, spec.neighbors.k, d)
    if spec.relative:  # 5. relative
        xs = [x[i] / scale[i] for i in range(d)]
        mean = sum(xs) / d
        score /= sum((v - mean) ** 2 for v in xs) / d + 1e-6
    if spec.detail is not None:  # 6. detail
        assert C is not None
        zx = [sum(err[i] * c[i] for i in range(d)) for c in C]
        rest = _pool([err[i] - sum(zx[j] * C[j][i] for j in range(len(C))) for i in range(d)], spec)
        term = sum(v * v for v in rest) / d
        if spec.neighbors is not None:
            assert Rx is not None
            term += _nearest(z + zx, [r + rx for r, rx in zip(R, Rx, strict=True)], spec.neighbors.k, d)
        score = spec.detail.primary_weight * score + spec.detail.weight * term
    return score


def reference_scores(
    X: F32, X_hat: F32, spec: ScoreSpec, Z: F32, R: F32, detail: Detail | None = None
) -> F32:
    rows = zip(X.reshape(len(X), -1).tolist(), X_hat.reshape(len(X), -1).tolist(), Z.tolist(), strict=True)
    C = detail.components.tolist() if detail is not None else None
    Rx = detail.reference.tolist() if detail is not None and detail.reference is not None else None
    return np.array([reference_score(x, x_hat, spec, z, R.tolist(), C, Rx) for x, x_hat, z in rows])


def rows(seed: int = 0) -> F32:
    """Seven image rows around 0.5; the last one nearly flat, so that the relative eps matters."""
    rng = np.random.default_rng(seed)
    X = 0.5 + 0.3 * rng.standard_normal((7, *ROW_SHAPE))
    X[-1] = 0.5 + 0.005 * rng.standard_normal(ROW_SHAPE)
    return X.astype(np.float32)


SCALE = (0.5 + np.random.default_rng(1).random(D)).astype(np.float32)  # per-value std, 0.5 .. 1.5


def spec_of(
    scaled: bool,
    pool: bool,
    topk: bool,
    relative: bool,
    neighbors: bool,
    weighted: bool = False,
    detail: bool = False,
) -> ScoreSpec:
    weight = NEIGHBORS_WEIGHT if weighted else None
    detail_spec = DetailSpec(
        components=M_DETAIL,
        file="detail.npy",
        reference_file="detail-neighbors.npy" if neighbors else None,
        primary_weight=PRIMARY_WEIGHT,
        weight=DETAIL_WEIGHT,
    )
    return ScoreSpec(
        reduction="topk" if topk else "mean",
        topk=TOPK if topk else None,
        scale=SCALE.tolist() if scaled else None,
        pool=3 if pool else None,
        image_shape=list(ROW_SHAPE) if pool else None,
        relative=relative,
        neighbors=(
            NeighborsSpec(k=K_NEIGHBORS, reference_rows=6, file="neighbors.npy", weight=weight)
            if neighbors
            else None
        ),
        detail=detail_spec if detail else None,
    )


def detail_of(components: F32 | None = None, seed: int = 5) -> Detail:
    """The detail term's arrays: M_DETAIL directions (orthonormal, and orthogonal to `components`
    when given, as fit makes them) and six reference codes along them."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((D, M_DETAIL))
    if components is not None:
        A -= components.T @ (components @ A)
    C = np.linalg.qr(A)[0].T.astype(np.float32)
    return Detail(components=C, reference=rng.standard_normal((6, M_DETAIL)).astype(np.float32))


# weighted: the neighbors term's weight; detail: step 6
OPTIONS = ("scaled", "pool", "topk", "relative", "neighbors", "weighted", "detail")
ALL = [
    options
    for flags in itertools.product([False, True], repeat=len(OPTIONS))
    if (options := dict(zip(OPTIONS, flags, strict=True)))["neighbors"] or not options["weighted"]
]
NO_NEIGHBORS = [o for o in ALL if not o["neighbors"] and not o["detail"]]


def _id(options: dict[str, bool]) -> str:
    return "-".join(k for k, on in options.items() if on) or "plain"


def codes(n: int, seed: int = 2) -> tuple[F32, F32]:
    """Codes (n, 3) and six reference codes (6, 3)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)).astype(np.float32), rng.standard_normal((6, 3)).astype(np.float32)


@pytest.mark.parametrize("options", ALL, ids=_id)
def test_numpy_row_scores_follow_the_spec(options: dict[str, bool]) -> None:
    spec = spec_of(**options)
    X = rows()
    X_hat = (X + 0.1 * np.random.default_rng(3).standard_normal(X.shape)).astype(np.float32)
    Z, R = codes(len(X))
    detail = detail_of()
    got = row_scores(X, X_hat, spec, Z, R, detail)
    np.testing.assert_allclose(got, reference_scores(X, X_hat, spec, Z, R, detail), rtol=RTOL)


@pytest.mark.parametrize("options", ALL, ids=_id)
def test_the_linear_onnx_scorer_follows_the_spec(options: dict[str, bool]) -> None:
    spec = spec_of(**options)
    rng = np.random.default_rng(4)
    center = rng.random(D)
    components = np.linalg.qr(rng.standard_normal((D, 3)))[0].T  # (3, D) orthonormal rows
    _, R = codes(1)
    detail = detail_of(components)
    graphs = build_linear_graphs(center, SCALE.astype(np.float64), components, ROW_SHAPE, spec, R, detail)
    session = ort.InferenceSession(graphs["scorer"].SerializeToString(), providers=["CPUExecutionProvider"])
    X = rows()
    X_hat, got = session.run(None, {"X": X})
    flat = X.reshape(len(X), -1).astype(np.float64)
    Z = ((flat - center) / SCALE) @ components.T  # the codes the graph's neighbors term measures
    expected_hat = (Z @ components) * SCALE + center
    np.testing.assert_allclose(X_hat.reshape(len(X), -1), expected_hat, rtol=1e-5, atol=1e-5)
    expected = reference_scores(X, expected_hat.astype(np.float32), spec, Z.astype(np.float32), R, detail)
    np.testing.assert_allclose(got, expected, rtol=RTOL * 5)


@pytest.mark.parametrize("options", NO_NEIGHBORS, ids=_id)
def test_the_torch_scorer_follows_the_spec(options: dict[str, bool]) -> None:
    torch = pytest.importorskip("torch")
    from training.nn.config import NetConfig
    from training.nn.export import _Scorer
    from training.nn.models import build_network

    spec = spec_of(**options)
    torch.manual_seed(0)
    center = torch.full((D,), 0.5)
    net = build_network(
        NetConfig(kind="dense", hidden=(8,), latent_dim=3), ROW_SHAPE, center, torch.ones(D), False
    )
    X = rows()
    with torch.no_grad():
        X_hat, got = _Scorer(net.eval(), spec)(torch.from_numpy(X))
    Z, R = codes(len(X))  # unused: the network scorer has no neighbors term
    expected = reference_scores(X, X_hat.numpy(), spec, Z, R)
    np.testing.assert_allclose(got.numpy(), expected, rtol=RTOL)


def test_the_torch_scorer_refuses_a_neighbors_term() -> None:
    torch = pytest.importorskip("torch")
    from training.errors import ExportError
    from training.nn.config import NetConfig
    from training.nn.export import _Scorer
    from training.nn.models import build_network

    net = build_network(
        NetConfig(kind="linear", latent_dim=3), ROW_SHAPE, torch.zeros(D), torch.ones(D), False
    )
    with pytest.raises(ExportError, match="no neighbors term"):
        _Scorer(net, spec_of(False, False, False, False, True))
    with pytest.raises(ExportError, match="no detail term"):
        _Scorer(net, spec_of(False, False, False, False, False, detail=True))


def test_the_reference_tells_the_options_apart() -> None:
    """Each option changes the reference's scores on these rows, so a dropped step would be seen."""
    X = rows()
    X_hat = (X + 0.1 * np.random.default_rng(3).standard_normal(X.shape)).astype(np.float32)
    Z, R = codes(len(X))
    detail = detail_of()
    plain = reference_scores(X, X_hat, spec_of(False, False, False, False, False), Z, R)
    for option in OPTIONS:
        one: dict[str, Any] = {o: o == option for o in OPTIONS}
        base = plain
        if option == "weighted":  # a weight only applies to a neighbors term
            one["neighbors"] = True
            base = reference_scores(X, X_hat, spec_of(False, False, False, False, True), Z, R)
        changed = reference_scores(X, X_hat, spec_of(**one), Z, R, detail)
        assert np.min(np.abs(changed - base) / base) > 1e-3, option
