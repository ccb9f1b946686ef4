"""`Client`: arrays in and out of a latentserve service as `.npy` / `.npz` bodies, with retries.

    ClientError               any failed call: `status` (None when no answer came), `message`,
    │                         and the server's error `type`, `field`, `details` when it sent them
    └── ServiceUnreachable    no HTTP answer after every retry (refused, reset, timed out)

Rows go by position (an array), or by column name: a pandas DataFrame or a mapping of column name
to values is put into the model's feature order (its manifest's `input.feature_names`, one GET
/models/{name}); other columns are left out, a missing feature is a ClientError naming it. A
DataFrame for a model without feature names goes by position.

4xx answers are raised at once; 5xx answers and transport errors are retried `retries` times with
exponential backoff (`backoff`, 2 x `backoff`, 4 x `backoff`, ...). Inference is a pure function of
the request, so repeating a POST is safe.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

NPY = "application/x-npy"
NPZ = "application/x-npz"

Array = npt.NDArray[Any]
Rows = npt.ArrayLike | Mapping[str, npt.ArrayLike]  # by position, or by column name (a DataFrame is both)


class ClientError(Exception):
    """A call failed; `status` is the HTTP status (None when the service never answered)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        field: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.field = field
        self.details = details


class ServiceUnreachable(ClientError):  # noqa: N818 (named for the condition, like the service's errors)
    """No HTTP answer after every retry: the service is down, unreachable, or too slow."""


@dataclass(frozen=True)
class AnomalyScores:
    """What /anomaly-score answered for a batch of rows."""

    scores: npt.NDArray[np.float32]  # (n,) reconstruction error per row
    p_values: npt.NDArray[np.float32]  # (n,) conformal p-value of each score
    is_anomaly: npt.NDArray[np.bool_]  # (n,) score > threshold, or p_value <= alpha (see rule)
    threshold: float  # the threshold applied (calibrated, the one asked for, or alpha's score cut-off)
    model: str  # the model that answered
    version: int  # and its version
    rule: str = "threshold"  # which rule flagged: "threshold", or "alpha" (p_value <= alpha)
    alpha: float | None = None  # the false-positive rate asked for, with rule "alpha"


class Client:
    """A synchronous client; thread-safe, so one instance may serve several worker threads.

    >>> with Client("http://127.0.0.1:8000") as c:
    ...     Z = c.encode("digits-pca", X)
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.2,
        *,
        max_connections: int = 16,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        headers = {"User-Agent": "latentserve-client"}
        if api_key:
            headers["X-API-Key"] = api_key
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    # ---- lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- registry and health ---------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """Every model with its versions (the `models` list of GET /models)."""
        models: list[dict[str, Any]] = self._request("GET", "/models").json()["models"]
        return models

    def model(self, name: str) -> dict[str, Any]:
        """One model's versions with their manifests (GET /models/{name})."""
        detail: dict[str, Any] = self._request("GET", f"/models/{name}").json()
        return detail

    def feature_names(self, model: str, version: int | None = None) -> list[str] | None:
        """The column names the model was trained on (its manifest's `input.feature_names`), or None."""
        return feature_names_of(self.model(model), version)

    def ready(self) -> bool:
        """Whether the service answers /health/ready with 200 (one try, no retries)."""
        try:
            return self._http.get("/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    # ---- inference -------------------------------------------------------------------------------
    def encode(self, model: str, X: Rows, version: int | None = None) -> Array:
        """Latent codes `Z (n, latent_dim)` of rows `X (n, *input_shape)` or flat rows."""
        return _load_npy(
            self._infer("/encode", model, version, self._by_name(model, version, X), NPY).content
        )

    def decode(self, model: str, Z: npt.ArrayLike, version: int | None = None) -> Array:
        """Rows `X_hat (n, *input_shape)` decoded from codes `Z (n, latent_dim)`."""
        return _load_npy(self._infer("/decode", model, version, Z, NPY).content)

    def reconstruct(self, model: str, X: Rows, version: int | None = None) -> tuple[Array, Array]:
        """`(X_hat, errors)`: reconstructions shaped like `X` and the reconstruction error of each row."""
        arrays = _load_npz(
            self._infer("/reconstruct", model, version, self._by_name(model, version, X), NPZ).content
        )
        return arrays["reconstructions"], arrays["errors"]

    def anomaly_score(
        self,
        model: str,
        X: Rows,
        version: int | None = None,
        threshold: float | None = None,
        alpha: float | None = None,
    ) -> AnomalyScores:
        """Scores, p-values and anomaly flags of rows `X` against the model's (or the given)
        threshold, or with `alpha` (a false-positive rate in (0, 1)) flagging p_value <= alpha."""
        extra = {} if threshold is None else {"threshold": repr(float(threshold))}
        if alpha is not None:
            extra["alpha"] = repr(float(alpha))
        response = self._infer("/anomaly-score", model, version, self._by_name(model, version, X), NPZ, extra)
        arrays = _load_npz(response.content)
        return AnomalyScores(
            scores=arrays["scores"],
            p_values=arrays["p_values"],
            is_anomaly=arrays["is_anomaly"].astype(np.bool_, copy=False),
            threshold=float(response.headers.get("x-threshold", "nan")),
            model=response.headers.get("x-model", model),
            version=int(response.headers.get("x-model-version", "0")),
            rule=response.headers.get("x-rule", "threshold"),
            alpha=float(response.headers["x-alpha"]) if "x-alpha" in response.headers else None,
        )

    # ---- plumbing --------------------------------------------------------------------------------
    def _by_name(self, model: str, version: int | None, X: Rows) -> npt.ArrayLike:
        """Rows with named columns (a DataFrame, a mapping) in the model's feature order; arrays as sent."""
        table: Any = X  # a Mapping, or a DataFrame (anything with `columns` and [name])
        if isinstance(X, Mapping):
            columns = [str(c) for c in X]
        elif hasattr(X, "columns") and not isinstance(X, np.ndarray):
            columns = [str(c) for c in table.columns]
        else:
            return X  # type: ignore[return-value]
        names = self.feature_names(model, version)
        if names is None:
            if isinstance(X, Mapping):
                raise ClientError(
                    f"model {model!r} records no feature names, so columns cannot be matched by name; "
                    "send an array whose columns are in training order"
                )
            return np.asarray(X)
        missing = [n for n in names if n not in columns]
        if missing:
            shown = ", ".join(repr(n) for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ClientError(f"no column named {shown}; model {model!r} needs every one of its features")
        return np.column_stack([np.asarray(table[n], dtype=np.float64) for n in names])

    def _infer(
        self,
        path: str,
        model: str,
        version: int | None,
        X: npt.ArrayLike,
        accept: str,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        params = {"model": model, **(extra or {})}
        if version is not None:
            params["version"] = str(version)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(X), allow_pickle=False)
        return self._request(
            "POST",
            path,
            params=params,
            content=buf.getvalue(),
            headers={"Content-Type": NPY, "Accept": accept},
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send with retries on 5xx and transport errors; raise ClientError on any other failure."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise ServiceUnreachable(
                        f"cannot reach the service at {self.url}: {_describe(exc)} "
                        f"(after {attempt + 1} attempts)"
                    ) from exc
            else:
                if response.status_code < 400:
                    return response
                if response.status_code < 500 or attempt >= self.retries:
                    raise _error(response)
            time.sleep(self.backoff * (2**attempt))
            attempt += 1


def feature_names_of(detail: dict[str, Any], version: int | None = None) -> list[str] | None:
    """The feature names in a GET /models/{name} answer, of `version` (default: the latest)."""
    wanted = version if version is not None else detail.get("latest")
    for entry in detail.get("versions", []):
        manifest = entry.get("manifest") or {}
        if entry.get("version") == wanted:
            names = manifest.get("input", {}).get("feature_names")
            return [str(n) for n in names] if names else None
    return None


def _describe(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, httpx.ConnectError) else f"{type(exc).__name__}: {text}"


def _error(response: httpx.Response) -> ClientError:
    """The server's JSON error (`{"error": {type, message, field, details}}`) as a ClientError."""
    status = response.status_code
    try:
        body = response.json()
        err = body["error"]
        message = str(err["message"])
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ClientError(f"HTTP {status}: {text}", status=status)
    return ClientError(
        message,
        status=status,
        error_type=err.get("type"),
        field=err.get("field"),
        details=err.get("details"),
    )


def _load_npy(body: bytes) -> Array:
    try:
        A = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ClientError(f"the service's answer is not a readable .npy array: {exc}") from None
    if not isinstance(A, np.ndarray):
        raise ClientError("the service answered an .npz archive where one .npy array was asked for")
    return A


def _load_npz(body: bytes) -> dict[str, Array]:
    try:
        archive = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ClientError(f"the service's answer is not a readable .npz archive: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ClientError("the service answered one .npy array where an .npz archive was asked for")
    with archive:
        return {name: archive[name] for name in archive.files}
