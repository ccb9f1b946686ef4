"""Writers for `training.export.export`: the ONNX graphs, the pictures and the model card.

encoder.onnx X (batch, *shape) -> Z (batch, k); decoder.onnx Z -> X_hat (batch, *shape);
scorer.onnx X -> (X_hat, scores) with scores as specified in docs/score.md.
The ONNX writer also checks the graphs against PyTorch on random inputs (validation rows are
checked by `training.export.verify` with the same bound): a difference above
ATOL + RTOL * max |reference| (1e-4 plus float32-scale slack) raises and nothing is published.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from latentserve_core.manifest import ScoreSpec
from latentserve_core.runtime.base import RELATIVE_EPS, row_scores
from latentserve_core.runtime.onnx import make_session
from training.base import F32, ReconstructionEstimator
from training.calibration import calibrate
from training.errors import ExportError
from training.export import TrainingRun, Writer, Written
from training.nn.estimator import AutoencoderEstimator
from training.nn.models import Autoencoder as Network
from training.nn.onnx_io import check_close, to_onnx


class _Encoder(nn.Module):
    def __init__(self, net: Network) -> None:
        super().__init__()
        self.net = net

    def forward(self, X: Tensor) -> Tensor:
        return self.net.encode(X)


class _Decoder(_Encoder):
    def forward(self, Z: Tensor) -> Tensor:
        return self.net.decode(Z)


class _Scorer(nn.Module):
    """X -> (X_hat, scores), scores as specified in docs/score.md (the torch implementation; no neighbors,
    no detail, no rotation term)."""

    score_scale: Tensor

    def __init__(self, net: Network, spec: ScoreSpec) -> None:
        super().__init__()
        if spec.metric != "mse":
            raise ExportError(f"the network scorer computes squared errors, not metric {spec.metric!r}")
        if spec.neighbors is not None:
            raise ExportError("the network scorer has no neighbors term; the PCA family's scorers do")
        if spec.detail is not None:
            raise ExportError("the network scorer has no detail term; the PCA family's scorers do")
        if spec.rotation is not None:
            raise ExportError("the network scorer has no rotation term; the PCA family's scorers do")
        self.net = net
        self.topk = spec.topk if spec.reduction == "topk" and spec.topk and spec.topk < net.d else None
        scale = torch.tensor(spec.scale if spec.scale is not None else [], dtype=torch.float32)
        self.scaled = spec.scale is not None
        self.register_buffer("score_scale", scale)
        self.pool = spec.pool if spec.pool is not None and spec.pool > 1 else None
        self.image_shape: tuple[int, int, int] | None = None
        if self.pool is not None:
            if spec.image_shape is None or int(np.prod(spec.image_shape)) != net.d:
                raise ExportError(f"score.image_shape {spec.image_shape} does not fit rows of {net.d}")
            H, W, C = spec.image_shape
            self.image_shape = (H, W, C)
        self.relative = spec.relative

    def forward(self, X: Tensor) -> tuple[Tensor, Tensor]:
        X_hat = self.net.decode(self.net.encode(X))
        x = X.reshape(-1, self.net.d)
        err = x - X_hat.reshape(-1, self.net.d)
        if self.scaled:
            err = err / self.score_scale
        if self.pool is not None and self.image_shape is not None:
            H, W, C = self.image_shape
            img = err.reshape(-1, H, W, C).permute(0, 3, 1, 2)  # (N, C, H, W)
            pooled = F.avg_pool2d(img, self.pool, stride=1, padding=self.pool // 2, count_include_pad=True)
            err = pooled.reshape(-1, self.net.d)  # channel-major order: the mean and top-k ignore it
        sq = err * err
        if self.topk is not None:
            sq = torch.topk(sq, self.topk, dim=1).values
        scores = sq.mean(dim=1)
        if self.relative:
            xs = x / self.score_scale if self.scaled else x
            centred = xs - xs.mean(dim=1, keepdim=True)
            scores = scores / ((centred * centred).mean(dim=1) + RELATIVE_EPS)
        return X_hat, scores


def random_rows(est: AutoencoderEstimator, n: int, seed: int) -> F32:
    """Random inputs in the training range: uniform [0, 1] images, mean + std * N(0, 1) features."""
    rng = np.random.default_rng(seed)
    shape = (n, *est.input_shape_)
    if not est.standardized_:
        return rng.random(shape, dtype=np.float32)
    center = est.net_.center.numpy().reshape(est.input_shape_)
    scale = est.net_.scale.numpy().reshape(est.input_shape_)
    return (center + scale * rng.standard_normal(shape)).astype(np.float32)


def write_onnx(est: ReconstructionEstimator, folder: Path) -> Written:
    """encoder.onnx, decoder.onnx, scorer.onnx; raise ExportError when random inputs disagree."""
    assert isinstance(est, AutoencoderEstimator)
    net = est.net_.cpu().eval()
    scorer = _Scorer(net, est.score_spec_)
    X = torch.from_numpy(random_rows(est, 3, seed=0))
    Z = torch.randn(3, est.latent_dim_)
    to_onnx(_Encoder(net), X, folder / "encoder.onnx", ["X"], ["Z"])
    to_onnx(_Decoder(net), Z, folder / "decoder.onnx", ["Z"], ["X_hat"])
    to_onnx(scorer, X, folder / "scorer.onnx", ["X"], ["X_hat", "scores"])
    est.parity_ = check_parity(est, folder)
    return [
        ("encoder", "encoder.onnx", "onnx"),
        ("decoder", "decoder.onnx", "onnx"),
        ("scorer", "scorer.onnx", "onnx"),
    ]


def check_parity(est: AutoencoderEstimator, folder: Path, n: int = 64, seed: int = 1) -> dict[str, float]:
    """Max |onnxruntime - PyTorch| of each graph on random rows and random codes (see check_close).

    Rows are compared in normalised units (divided by the standardisation's std): raw values of
    standardised features reach the thousands, where one float32 ulp alone exceeds 1e-4. Scores
    are compared with `score_samples`, i.e. `row_scores` on the PyTorch reconstruction.
    """
    X = random_rows(est, n, seed)
    Z = np.random.default_rng(seed).standard_normal((n, est.latent_dim_)).astype(np.float32)
    unit = est.net_.scale.numpy().astype(np.float64).reshape(est.input_shape_)
    X_hat = est.reconstruct(X)
    # role -> (input, [(reference, divisor)])
    expected: dict[str, tuple[F32, list[tuple[F32, Any]]]] = {
        "encoder": (X, [(est.encode(X), 1.0)]),
        "decoder": (Z, [(est.decode(Z), unit)]),
        "scorer": (X, [(X_hat, unit), (row_scores(X, X_hat, est.score_spec_), 1.0)]),
    }
    diffs: dict[str, float] = {}
    for role, (inputs, refs) in expected.items():
        session = make_session(folder / f"{role}.onnx")
        got = session.run(None, {session.get_inputs()[0].name: inputs})
        diffs[f"random_{role}_max_abs_diff"] = max(
            check_close(
                f"{role}.onnx ({name}, random inputs)",
                np.asarray(g, np.float64) / div,
                np.asarray(ref, np.float64) / div,
            )
            for g, (ref, div), name in zip(got, refs, [o.name for o in session.get_outputs()], strict=True)
        )
    return diffs


def picture_writer(run: TrainingRun) -> Writer:
    """A writer of the pictures and the model card; it needs the run for labels and calibration rows."""

    def write(est: ReconstructionEstimator, folder: Path) -> Written:
        assert isinstance(est, AutoencoderEstimator)
        return write_pictures(est, run, folder)

    return write


def write_pictures(est: AutoencoderEstimator, run: TrainingRun, folder: Path) -> Written:
    """loss.png, reconstructions.png (images), scores.png, codes.png and README.md."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sp = run.splits
    out: Written = []

    def save(fig: Any, name: str) -> None:
        fig.savefig(folder / name, dpi=72)
        plt.close(fig)
        out.append(("picture", name, "png"))

    fig, ax = plt.subplots(figsize=(4, 3))
    epochs = [h.epoch for h in est.history_]
    ax.plot(epochs, [h.train_loss for h in est.history_], label="train")
    if est.history_ and est.history_[0].validation_loss is not None:
        ax.plot(epochs, [h.validation_loss or np.nan for h in est.history_], label="validation")
    ax.set(xlabel="epoch", ylabel=f"loss ({est.loss_})", title=f"{est.kind}: training")
    ax.legend()
    fig.tight_layout()
    save(fig, "loss.png")

    rows = sp.X_val[:8]
    if run.dataset.layout == "image":
        X_hat = est.reconstruct(rows)
        # one mosaic (inputs above, reconstructions below) drawn by a single imshow: cheap
        pad = [(0, 0), (1, 1), (1, 1)] + [(0, 0)] * (rows.ndim - 3)  # a white frame around each image
        strips = [
            np.concatenate(list(np.pad(np.clip(R, 0, 1), pad, constant_values=1.0)), axis=1)
            for R in (rows, X_hat)
        ]
        mosaic = np.concatenate(strips, axis=0)
        fig, ax = plt.subplots(figsize=(len(rows), 2.3))
        ax.imshow(mosaic, cmap="gray" if mosaic.ndim == 2 else None, vmin=0, vmax=1)
        ax.axis("off")
        ax.set_title("input (top) vs reconstruction (bottom)", fontsize=8)
        save(fig, "reconstructions.png")

    cal = run.scores(est, "cal")
    threshold = calibrate(cal, run.quantile).value
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.hist(cal, bins=40)
    ax.axvline(threshold, color="red", label=f"threshold (q={run.quantile}) {threshold:.3g}")
    ax.set(xlabel="anomaly score", ylabel="calibration rows")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, "scores.png")

    Z = est.encode(sp.X_val).astype(np.float64)
    if Z.shape[1] >= 2:
        Zc = Z - Z.mean(axis=0)
        _, _, Vt = np.linalg.svd(Zc, full_matrices=False)
        P = Zc @ Vt[:2].T
        fig, ax = plt.subplots(figsize=(4, 3.4))
        sc = ax.scatter(P[:, 0], P[:, 1], c=sp.y_val if sp.y_val is not None else None, s=6, cmap="tab10")
        if sp.y_val is not None:
            fig.colorbar(sc, ax=ax, label="label")
        ax.set(xlabel="code PC 1", ylabel="code PC 2", title="validation codes")
        fig.subplots_adjust(left=0.18, bottom=0.16, right=0.96, top=0.9)  # fixed: tight_layout costs 0.1 s
        save(fig, "codes.png")

    val_err = float(run.scores(est, "val").mean())
    last = est.history_[-1] if est.history_ else None
    parity = getattr(est, "parity_", {})
    arch = est.net.architecture
    layers = {
        "conv": f"channels {list(est.net.channels)}",
        "lstm": f"LSTM units {est.net.hidden[0]}",
        "linear": "no hidden layer",
    }.get(arch, f"hidden {list(est.net.hidden)}")
    lines = [
        f"# {run.dataset.name} {est.kind} autoencoder",
        "",
        f"- architecture: {est.net.architecture}, {layers}, latent {est.latent_dim_}, "
        f"activation {est.net.activation}, output {est.output_}, loss {est.loss_}, "
        f"noise {est.noise_} ({est.net.noise_kind}), sparsity {est.net.sparsity}",
        f"- data: {run.dataset.name}, rows {list(est.input_shape_)}, train {len(sp.X_train)}, "
        f"validation {len(sp.X_val)}, calibration {len(sp.X_cal)}; standardised: {est.standardized_}",
        f"- epochs run: {len(est.history_)}; last train loss {last.train_loss:.4g}"
        if last
        else "- not trained",
        f"- validation anomaly score (mean): {val_err:.4g}; threshold at q={run.quantile}: {threshold:.4g}",
        "- ONNX parity on random inputs (max abs diff): "
        + ", ".join(f"{k.split('_')[1]} {v:.2g}" for k, v in parity.items()),
        "",
        *(f"![{name}]({name})" for _, name, _ in out),
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines), encoding="utf-8")
    out.append(("card", "README.md", "md"))
    return out
