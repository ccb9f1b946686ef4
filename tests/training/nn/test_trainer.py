"""The loop: the loss falls, runs repeat exactly, noise reaches the network, early stopping."""

from __future__ import annotations

import numpy as np

from training.data import Splits
from training.nn.config import NetConfig, TrainConfig
from training.nn.estimator import AutoencoderEstimator

SMALL = NetConfig(kind="dense", hidden=(32,), latent_dim=8)


def fit(digits: Splits, net: NetConfig = SMALL, **train: object) -> AutoencoderEstimator:
    cfg = TrainConfig(**{"epochs": 4, "batch_size": 64, "quiet": True, **train})  # type: ignore[arg-type]
    return AutoencoderEstimator(net, cfg).fit(digits.X_train, digits.X_val)


def test_digits_model_beats_the_mean_image_on_held_out_digits(digits: Splits) -> None:
    est = fit(digits, epochs=25)
    losses = [h.train_loss for h in est.history_]
    assert losses[-1] < 0.8 * losses[0]
    err = est.score_samples(digits.X_cal).mean()
    mean_image = digits.X_train.mean(axis=0)
    baseline = np.square(digits.X_cal - mean_image).mean()
    assert err < 0.5 * baseline, (err, baseline)
    assert est.loss_ == "bce" and est.output_ == "sigmoid"  # [0, 1] images


def test_training_is_seeded_and_repeatable(digits: Splits) -> None:
    a, b = fit(digits, seed=3), fit(digits, seed=3)
    assert [h.train_loss for h in a.history_] == [h.train_loss for h in b.history_]
    np.testing.assert_array_equal(a.encode(digits.X_val), b.encode(digits.X_val))
    c = fit(digits, seed=4)
    assert [h.train_loss for h in a.history_] != [h.train_loss for h in c.history_]


def test_denoising_trains_on_corrupted_inputs(digits: Splits) -> None:
    clean = fit(digits, NetConfig(kind="dense", hidden=(32,), latent_dim=8, noise=0.0))
    noisy = fit(digits, NetConfig(kind="denoising", hidden=(32,), latent_dim=8, noise=0.3))
    dropout = NetConfig(kind="denoising", hidden=(32,), latent_dim=8, noise=0.3, noise_kind="dropout")
    dropped = fit(digits, dropout)
    for corrupted in (noisy, dropped):
        # the same seed and the same clean targets: only the corrupted inputs make training harder
        assert corrupted.history_[-1].train_loss > clean.history_[-1].train_loss
        # validation reconstructs clean inputs, which is easier than the noisy training task
        last = corrupted.history_[-1]
        assert last.validation_loss is not None and last.validation_loss < last.train_loss


def test_early_stopping_restores_the_best_weights(digits: Splits) -> None:
    # a learning rate far too high makes the validation loss wander; patience 2 stops the run
    est = fit(digits, epochs=30, lr=0.5, patience=2)
    vals = [h.validation_loss for h in est.history_]
    assert len(vals) < 30
    best = min(v for v in vals if v is not None)
    import torch

    from training.nn.trainer import Objective, validation_loss

    X_val = torch.from_numpy(digits.X_val)
    restored = float(validation_loss(est.net_, X_val, Objective(loss=est.loss_), torch.device("cpu")))
    assert abs(restored - best) < 1e-5


def test_sparsity_shrinks_the_codes(digits: Splits) -> None:
    plain = fit(digits, epochs=6)
    sparse = fit(digits, NetConfig(kind="dense", hidden=(32,), latent_dim=8, sparsity=0.5), epochs=6)
    assert np.abs(sparse.encode(digits.X_val)).mean() < 0.5 * np.abs(plain.encode(digits.X_val)).mean()


def test_bf16_autocast_trains(digits: Splits) -> None:
    est = fit(digits, bf16=True, epochs=3)
    assert est.history_[-1].train_loss < est.history_[0].train_loss


def test_compiled_step_trains_the_same_model(digits: Splits) -> None:
    """--compile (torch.compile; CUDA graphs on a GPU) runs here on the CPU through inductor: same
    losses and codes as the eager loop, up to float reordering."""
    eager, compiled = fit(digits, epochs=3), fit(digits, epochs=3, compile=True)
    np.testing.assert_allclose(
        [h.train_loss for h in compiled.history_], [h.train_loss for h in eager.history_], rtol=1e-4
    )
    np.testing.assert_allclose(compiled.encode(digits.X_val), eager.encode(digits.X_val), atol=1e-4)
