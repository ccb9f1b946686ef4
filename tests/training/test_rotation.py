"""The rotation term (docs/score.md, step 7): what its network learns, its weights, parity of the
published runtimes and the service with the trained model, its manifest, its files and its refusals."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from pydantic import ValidationError

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import JoblibRuntime, OnnxRuntime
from service.errors import IntegrityError
from tests.service.conftest import serve
from training.base import DETAIL_QUANTILE
from training.cli import main
from training.config import ScoreConfig
from training.data import Dataset, split
from training.errors import UsageError
from training.export import TrainingRun, export_pca_family
from training.nn.config import turn_pool
from training.nn.models import TurnNet, TurnTerm, turn
from training.pca import PCA, KernelPCA, PCAFamily

WEIGHT = 0.5


def _images(n: int, shape: tuple[int, int] = (12, 12), seed: int = 0) -> np.ndarray:
    """Upright 'L' strokes of random length, thickness and place, with noise: their orientation is
    what the class has in common."""
    rng = np.random.default_rng(seed)
    H, W = shape
    out = rng.uniform(0.0, 0.1, (n, H, W)).astype(np.float32)
    for img in out:
        top, left = rng.integers(0, 3, 2)
        tall, wide, thick = rng.integers(H // 2, H - 2), rng.integers(W // 3, W // 2), rng.integers(1, 3)
        img[top : top + tall, left : left + thick] = 1.0
        img[top + tall - thick : top + tall, left : left + wide] = 1.0
    return out


def _run(X: np.ndarray) -> TrainingRun:
    ds = Dataset(name="ells", X=X, y=None, layout="image")
    return TrainingRun(dataset=ds, splits=split(X, None, seed=0), seed=0)


def _score(**rotation: int) -> ScoreConfig:
    return ScoreConfig(pool=3, neighbors=3, relative=True, rotation=WEIGHT, **rotation)  # type: ignore[arg-type]


def _fitted(est: PCAFamily, X: np.ndarray) -> tuple[PCAFamily, TrainingRun]:
    run = _run(X)
    return est.fit(run.splits.X_train, run.splits.X_val), run


@pytest.fixture(scope="module")
def ells() -> tuple[PCAFamily, TrainingRun]:
    return _fitted(PCA(4, device="cpu", score=_score(rotation_epochs=3), layout="image"), _images(400))


def _auroc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """The share of (normal, anomalous) pairs the scores order right (ties count half)."""
    diff = anomalous[None, :].astype(np.float64) - normal[:, None]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def _turned(X: np.ndarray, k: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(X, k, axes=(1, 2)))


def test_the_term_learns_the_classes_orientation(ells: tuple[PCAFamily, TrainingRun]) -> None:
    """Fresh upright images get a low term, the same images turned a quarter turn a high one: the
    network tells the four turns apart; and the whole score ranks the turned ones higher too."""
    est, _ = ells
    upright = _images(200, seed=7)
    term = est.rotation_
    for k in (1, 2, 3):
        assert _auroc(term(upright), term(_turned(upright, k))) > 0.95
        assert _auroc(est.score_samples(upright), est.score_samples(_turned(upright, k))) > 0.9


def test_the_parts_are_weighed_on_the_validation_rows(ells: tuple[PCAFamily, TrainingRun]) -> None:
    est, run = ells
    spec = est.score_spec_
    assert spec.rotation is not None and spec.rotation.pool == 1 and spec.rotation.file == "rotation.onnx"
    X_val = run.splits.X_val
    before = copy.copy(est)
    before.score_spec_ = spec.model_copy(update={"rotation": None})
    first = before.score_samples(X_val).astype(np.float64)
    term = est.rotation_(X_val).astype(np.float64)
    assert spec.rotation.primary_weight * np.quantile(first, DETAIL_QUANTILE) == pytest.approx(1.0, rel=1e-4)
    assert spec.rotation.weight * np.quantile(term, DETAIL_QUANTILE) == pytest.approx(WEIGHT, rel=1e-4)
    expected = spec.rotation.primary_weight * first + spec.rotation.weight * term
    np.testing.assert_allclose(est.score_samples(X_val), expected, rtol=1e-5)


def test_every_runtime_and_the_service_serve_the_trained_score(
    tmp_path: Path, ells: tuple[PCAFamily, TrainingRun]
) -> None:
    """The fused ONNX scorer (the term's graph inside it), the joblib runtime (the term's model run
    beside the numpy score) and /anomaly-score all return the trained model's score."""
    est, run = ells
    folder = export_pca_family(est, run, tmp_path, "ells")
    manifest = Manifest.read(folder)
    assert manifest.score == est.score_spec_
    assert ("rotation", "rotation.onnx", "onnx") in {(f.role, f.path, f.format) for f in manifest.files}
    rows = np.concatenate([_images(20, seed=3), _turned(_images(20, seed=4), 1)])
    expected = est.score_samples(rows)
    for rt in (OnnxRuntime.load(manifest, folder), JoblibRuntime.load(manifest, folder)):
        np.testing.assert_allclose(rt.compute("scores", rows)[0], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rt.reconstruct(rows).scores, expected, rtol=1e-5, atol=1e-6)
        # the fused scorer holds the term: the ONNX runtime never opens rotation.onnx's own session
        assert rt._rotation is not None and (rt._rotation._session is None) == (rt.format == "onnx")
    with serve(tmp_path) as client:
        r = client.post("/anomaly-score", json={"model": "ells", "inputs": rows.tolist()})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["scores"], expected, rtol=1e-5, atol=1e-6)
        assert r.json()["is_anomaly"][20:].count(True) > r.json()["is_anomaly"][:20].count(True)


def test_offline_scorers_get_the_term(tmp_path: Path, ells: tuple[PCAFamily, TrainingRun]) -> None:
    """The Spark scorer's bundle, read from the version folder, carries rotation.onnx and scores as
    the trained model; the service hands the file to a scorer that downloads its bundle (the
    artifacts route `from_service` reads)."""
    from latentserve_client.spark._bundle import from_folder, runtime

    est, run = ells
    folder = export_pca_family(est, run, tmp_path, "ells")
    rows = _images(12, seed=8)
    bundle = from_folder(folder)
    assert "rotation.onnx" in bundle.files
    np.testing.assert_allclose(runtime(bundle).compute("scores", rows)[0], est.score_samples(rows), rtol=1e-5)
    with serve(tmp_path) as client:
        answer = client.get("/models/ells/versions/1/artifacts/rotation.onnx")
        assert answer.status_code == 200 and answer.content == (folder / "rotation.onnx").read_bytes()


def test_the_published_term_is_the_networks_own(tmp_path: Path, ells: tuple[PCAFamily, TrainingRun]) -> None:
    """rotation.onnx, run by onnxruntime alone, gives what the trained model's term gives."""
    est, run = ells
    folder = export_pca_family(est, run, tmp_path, "ells")
    session = ort.InferenceSession(str(folder / "rotation.onnx"), providers=["CPUExecutionProvider"])
    X = _images(10, seed=5)
    (got,) = session.run(None, {session.get_inputs()[0].name: X.reshape(10, -1)})
    np.testing.assert_allclose(got, est.rotation_(X), rtol=1e-6)


@pytest.mark.parametrize(("shape", "pool"), [((6, 6, 1), 1), ((8, 12, 3), 2)], ids=["square", "oblong"])
def test_the_term_is_log1p_of_the_surprise_of_the_right_turn(shape: tuple[int, int, int], pool: int) -> None:
    """TurnTerm (what rotation.onnx computes) = log(1 + sum over k of -log softmax(net(image turned
    k times))[k]), the image laid out channels last and averaged over pool x pool blocks; its turns
    are torch.rot90's; square images' four turns in one batch give what four passes give."""
    torch.manual_seed(0)
    net = TurnNet(shape[2]).eval()
    X = torch.rand(5, int(np.prod(shape)))
    H, W, C = shape
    images = torch.nn.functional.avg_pool2d(X.reshape(5, H, W, C).permute(0, 3, 1, 2), pool)
    with torch.no_grad():
        surprise = sum(
            -torch.log_softmax(net(torch.rot90(images, k, dims=(2, 3))), dim=1)[:, k] for k in range(4)
        )
        got = TurnTerm(net, shape, pool)(X)
    torch.testing.assert_close(got, torch.log1p(surprise), rtol=1e-5, atol=1e-6)
    x = torch.randn(2, 3, 5, 7)
    for k in range(4):
        assert torch.equal(turn(x, k), torch.rot90(x, k, dims=(2, 3)))


def test_the_network_is_seeded(ells: tuple[PCAFamily, TrainingRun]) -> None:
    """Two fits with one seed publish the same network, whatever torch's random state was before."""
    est, run = ells
    torch.manual_seed(12345)  # the global state a fit must not depend on
    again = copy.deepcopy(est).fit(run.splits.X_train, run.splits.X_val)
    X = _images(10, seed=6)
    np.testing.assert_array_equal(again.rotation_(X), est.rotation_(X))


def test_non_square_colour_images_and_the_pool(tmp_path: Path) -> None:
    """Images of 12 x 16 x 3 train and serve; with --score-rotation-size 6 the network sees them
    averaged over 2 x 2 blocks (the largest factor keeping the shorter side >= 6)."""
    grey = _images(240, (12, 16))
    X = np.repeat(grey[..., None], 3, axis=3) * np.asarray([1.0, 0.5, 0.25], dtype=np.float32)
    score = _score(rotation_epochs=1, rotation_size=6)
    est, run = _fitted(PCA(3, device="cpu", score=score, layout="image"), X)
    assert est.score_spec_.rotation is not None and est.score_spec_.rotation.pool == 2
    assert (
        turn_pool((12, 16, 3), 6) == 2 and turn_pool((8, 8, 1), 28) == 1 and turn_pool((64, 64, 1), 28) == 2
    )
    folder = export_pca_family(est, run, tmp_path, "colour")
    manifest = Manifest.read(folder)
    rows = X[:8]
    np.testing.assert_allclose(
        OnnxRuntime.load(manifest, folder).compute("scores", rows)[0], est.score_samples(rows), rtol=1e-5
    )


def test_kernel_pca_serves_the_term_from_joblib(tmp_path: Path) -> None:
    est, run = _fitted(
        KernelPCA(3, score=ScoreConfig(rotation=1.0, rotation_epochs=1), layout="image"), _images(200)
    )
    folder = export_pca_family(est, run, tmp_path, "kernel")
    manifest = Manifest.read(folder)
    assert manifest.format == "joblib"
    rows = _images(6, seed=9)
    np.testing.assert_allclose(
        JoblibRuntime.load(manifest, folder).compute("scores", rows)[0], est.score_samples(rows), rtol=1e-5
    )


def test_manifest_requires_the_rotation_file_and_refuses_a_changed_one(
    tmp_path: Path, ells: tuple[PCAFamily, TrainingRun]
) -> None:
    est, run = ells
    folder = export_pca_family(est, run, tmp_path, "ells")
    manifest = Manifest.read(folder)
    data = manifest.model_dump(mode="json")
    unlisted = dict(data, files=[f for f in data["files"] if f["role"] != "rotation"])
    with pytest.raises(ValidationError, match=r"'rotation\.onnx' is not listed as an ONNX rotation file"):
        Manifest.model_validate(unlisted)
    path = folder / "rotation.onnx"
    path.write_bytes(path.read_bytes()[:-8] + b"\0" * 8)
    for runtime in (OnnxRuntime, JoblibRuntime):
        with pytest.raises(IntegrityError, match="rotation"):
            runtime.load(manifest, folder)
    path.write_bytes(b"not an onnx model")  # listed with this file's own checksum: loads, then fails
    size, digest = path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()
    files = [
        f.model_copy(update={"sha256": digest, "bytes": size}) if f.role == "rotation" else f
        for f in manifest.files
    ]
    with pytest.raises(IntegrityError, match="not a loadable ONNX model"):
        JoblibRuntime.load(manifest.model_copy(update={"files": files}), folder)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--score-rotation", "0"], "--score-rotation must be a weight > 0"),
        (["--score-rotation", "0.5", "--score-rotation-epochs", "0"], "--score-rotation-epochs must be in"),
        (["--score-rotation", "0.5", "--score-rotation-size", "2"], "--score-rotation-size must be >= 4"),
        (["--score-rotation", "0.5", "--model", "dense"], "--model dense has no rotation term"),
    ],
)
def test_bad_rotation_settings_are_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    argv = ["fit", "--dataset", "digits", "--name", "r", "--models-dir", str(tmp_path), "--model", "pca"]
    assert main([*argv, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r").exists()


def test_the_term_needs_images_large_enough_and_image_rows() -> None:
    X = np.random.default_rng(0).random((60, 3, 3), dtype=np.float32)
    with pytest.raises(UsageError, match="needs images of at least 4 x 4 pixels, got 3 x 3"):
        PCA(2, device="cpu", score=ScoreConfig(rotation=0.5), layout="image").fit(X, X[:10])
    rows = np.random.default_rng(0).random((60, 9), dtype=np.float32)
    with pytest.raises(UsageError, match="--score-rotation needs image rows"):
        PCA(2, device="cpu", score=ScoreConfig(rotation=0.5), layout="features").fit(rows, rows[:10])
    with pytest.raises(UsageError, match="give fit\\(X, X_val\\)"):
        PCA(2, device="cpu", score=ScoreConfig(rotation=0.5), layout="image").fit(_images(60))


def test_without_torch_the_term_is_refused_before_any_training(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    est = PCA(2, device="cpu", score=ScoreConfig(rotation=0.5), layout="image")
    with pytest.raises(UsageError, match=r"install torch .*--preset one-class-images-pca"):
        est.fit(_images(60), _images(20, seed=1))
    assert not hasattr(est, "components_")  # refused before the PCA was fitted


@pytest.mark.parametrize("kind", ["pca", "sklearn-pca", "incremental-pca", "kernel-pca"])
def test_every_pca_kind_trains_the_term_where_device_says(kind: str) -> None:
    from training.api import pca_estimator
    from training.config import PCAConfig

    est = pca_estimator(
        kind, PCAConfig(), standardize=False, seed=0, device="cpu", score=_score(), layout="image"
    )
    assert est.device == "cpu" and est.get_params()["device"] == "cpu"


def test_the_scorer_takes_only_a_plain_opset_17_term(ells: tuple[PCAFamily, TrainingRun]) -> None:
    import onnx

    from training.onnx_linear import rotation_nodes

    est, _ = ells
    model = onnx.load_from_string(est.rotation_.model)
    rotation_nodes("x", "before", "scores", est.score_spec_, model.SerializeToString())  # as exported: taken
    model.opset_import[0].version = 18
    with pytest.raises(ValueError, match="must use opset 17 only"):
        rotation_nodes("x", "before", "scores", est.score_spec_, model.SerializeToString())
