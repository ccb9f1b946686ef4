"""`Detector`: the estimator contract PyOD and scikit-learn users expect, over the served artifact.

    det = Detector().fit(X_train)           # numpy (n, F) / (n, H, W[, C]) or a pandas DataFrame
    scores = det.decision_function(X_test)  # higher = more anomalous
    labels = det.predict(X_test)            # 0 / 1 by the calibrated threshold

`fit` trains through `training.fit` and publishes into a private temporary registry, then loads
that version with the service's own runtime (`latentserve_core.runtime.RUNTIMES`, ONNX first as the
registry does): every later call runs the artifact the service would serve, so `decision_function`
gives exactly the scores `/anomaly-score` returns for the same rows. `publish(name, models_dir)`
copies the fitted version into a registry as its next version (`training.publish`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from latentserve_core.errors import LatentServeError
from latentserve_core.manifest import Manifest, is_valid_name, sha256_of
from latentserve_core.runtime import RUNTIMES, ModelRuntime
from training.api import fit as fit_version
from training.config import MODELS_DIR, FitConfig
from training.data import dataset_from_array
from training.errors import DataError, ExportError, UsageError
from training.publish import Staging, check_writable

F32 = npt.NDArray[np.float32]
_NAME = "detector"  # the model's name in the private registry


class Detector(BaseEstimator):  # type: ignore[misc]
    """An anomaly detector with `fit` / `decision_function` / `predict` / `p_values`.

    config: a FitConfig, a preset's (`training.presets.preset(NAME)`), a kind ("pca"), or None for
        the default for the data's layout; seed: seeds the split and the fit; classes: train on the
        rows of these labels only (needs y in `fit`).

    Fitted attributes: `threshold_` (the calibrated threshold on the scores), `n_features_in_`
    (values per row), `feature_names_in_` (a DataFrame's columns; absent for arrays),
    `decision_scores_` (the training rows' scores) and `labels_` (their 0 / 1), as PyOD's.
    """

    def __init__(
        self,
        config: FitConfig | str | None = None,
        *,
        seed: int = 0,
        classes: tuple[int, ...] | None = None,
    ) -> None:
        self.config = config
        self.seed = seed
        self.classes = classes

    # ---- fit -------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> Detector:
        """Train on rows X (n, F), (n, H, W) or (n, H, W, C), or a DataFrame, with labels y (n,)
        when `classes` is set; return self."""
        rows = dataset_from_array(X, y)  # checked here once, so that the errors name X and y
        registry = tempfile.TemporaryDirectory(prefix="latentserve-detector-")
        folder = fit_version(
            self.config,  # None: the default for the rows' layout
            X,
            y=y,
            classes=self.classes,
            name=_NAME,
            models_dir=registry.name,
            seed=self.seed,
        )
        manifest = Manifest.read(folder)
        self._registry = registry  # removed with the detector
        self.folder_ = folder
        self.manifest_ = manifest
        self.runtime_ = _load(manifest, folder)
        self.threshold_ = float(manifest.threshold.value)
        self.n_features_in_ = manifest.input.size
        if rows.feature_names is not None:
            self.feature_names_in_ = np.asarray(rows.feature_names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.decision_scores_ = self._scores(self.runtime_.check_inputs(rows.X))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)
        return self

    # ---- scores ------------------------------------------------------------------------------------
    def decision_function(self, X: Any) -> F32:
        """The anomaly score of each row (n,), higher = more anomalous: `/anomaly-score`'s scores."""
        return self._scores(self._check(X))

    def p_values(self, X: Any) -> F32:
        """The conformal p-value of each row (n,): (1 + #{calibration scores >= score}) / (n_cal + 1),
        the share of held-out normal rows at least as unusual; small = anomalous. Under the
        calibration rows' distribution P(p <= alpha) <= alpha."""
        return self.runtime_.p_values(self.decision_function(X))

    def predict_proba(self, X: Any) -> F32:
        """(n, 2): column 0 the conformal p-value (`p_values`), column 1 its complement, 1 - p; the
        layout of PyOD's predict_proba (inlier, outlier). The p-value is calibrated (a uniform
        share under normal data), not a probability that the row is an anomaly."""
        p = self.p_values(X)
        return np.stack([p, np.float32(1.0) - p], axis=1)

    def predict(self, X: Any, *, alpha: float | None = None) -> npt.NDArray[np.int64]:
        """1 for an anomaly, 0 for a normal row (n,), as PyOD: score > `threshold_`, or with `alpha`
        in (0, 1) p-value <= alpha (a false-positive rate), as `/anomaly-score` decides."""
        scores = self.decision_function(X)
        try:
            _, flagged, _ = self.runtime_.judge(scores, alpha=alpha)
        except LatentServeError as exc:
            raise UsageError(exc.message) from None
        return flagged.astype(np.int64)

    # ---- publish -----------------------------------------------------------------------------------
    def publish(self, name: str, models_dir: Path | str = MODELS_DIR) -> Path:
        """Copy the fitted version into `models_dir` as the next version of `name` (staged, checked
        against its sha256, then renamed in at once); return the new version folder."""
        self._check_fitted()
        if not is_valid_name(name):
            raise UsageError(
                f"{name!r} is not a valid model name: 1-64 characters of a-z, 0-9, '.', '_', '-', "
                "starting with a letter or digit"
            )
        models_dir = Path(models_dir)
        check_writable(models_dir)
        with Staging(models_dir, name) as stage:
            for entry in self.manifest_.files:
                target = stage.path / entry.path
                shutil.copyfile(self.folder_ / entry.path, target)
                if sha256_of(target) != entry.sha256:
                    raise ExportError(
                        f"{entry.path}: the copy differs from the fitted file; nothing was published"
                    )
            return stage.publish(self.manifest_.model_copy(update={"name": name}))

    # ---- checks ------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "runtime_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit(X) before using it"
            )

    def _check(self, X: Any) -> F32:
        """X as validated float32 rows of the fitted shape: a DataFrame's columns are taken by name."""
        self._check_fitted()
        names = getattr(self, "feature_names_in_", None)
        if names is not None and hasattr(X, "columns"):
            present = set(map(str, X.columns))
            missing = [c for c in names if c not in present]
            if missing:
                raise DataError(f"X: the DataFrame has no column {missing[0]!r}; fitted on {list(names)}")
            X = X.rename(columns=str)[list(names)]
        A = dataset_from_array(X).X
        shape = list(self.runtime_.row_shape)
        if list(A.shape[1:]) not in (shape, [self.n_features_in_]):
            raise UsageError(
                f"X has rows of shape {list(A.shape[1:])}, but {type(self).__name__} was fitted on rows "
                f"of shape {shape} ({self.n_features_in_} values)"
            )
        try:
            return self.runtime_.check_inputs(A, "X")
        except LatentServeError as exc:  # e.g. values far outside the training range
            raise DataError(exc.message) from None

    def _scores(self, X: F32) -> F32:
        try:
            return self.runtime_.compute("scores", X)[0]
        except LatentServeError as exc:
            raise DataError(exc.message) from None


def _load(manifest: Manifest, folder: Path) -> ModelRuntime:
    """The version as the registry serves it: ONNX when it has it, else its own format."""
    return RUNTIMES[manifest.serving_order[0]].load(manifest, folder)
