"""Score real rows against a running service, from inside the serve image: scripts/image-check.sh's probe.

    python image_probe.py URL MODEL

POSTs the first rows of scikit-learn's breast-cancer data to /anomaly-score twice, once as JSON and
once as a `.npy` body through `latentserve_client.Client`, checks that both answers name the model and
agree, and prints one line. Needs only what the serve image installs, plus `latentserve_client/`
beside this file (the image ships the server only; image-check.sh mounts the client next to it).
"""

from __future__ import annotations

import sys

import httpx
import numpy as np
from sklearn.datasets import load_breast_cancer

from latentserve_client import Client


def main(url: str, model: str) -> int:
    X = load_breast_cancer().data[:8].astype(np.float32)
    response = httpx.post(f"{url}/anomaly-score", json={"model": model, "inputs": X.tolist()}, timeout=30)
    if response.status_code != 200:
        print(f"JSON /anomaly-score answered {response.status_code}: {response.text[:300]}", file=sys.stderr)
        return 1
    body = response.json()
    with Client(url) as client:
        npy = client.anomaly_score(model, X)
    json_scores = np.asarray(body["scores"], dtype=np.float32)
    problems = []
    if body["model"] != model or npy.model != model:
        problems.append(f"answered by {body['model']!r} / {npy.model!r}, asked {model!r}")
    if json_scores.shape != (len(X),) or npy.scores.shape != (len(X),):
        problems.append(f"{len(X)} rows sent, scores shaped {json_scores.shape} / {npy.scores.shape}")
    elif not np.allclose(json_scores, npy.scores, rtol=1e-5, atol=1e-6):
        problems.append(f"JSON scores {json_scores[:3]} differ from .npy scores {npy.scores[:3]}")
    if problems:
        print("; ".join(problems), file=sys.stderr)
        return 1
    print(
        f"{model} v{npy.version}: {len(X)} rows, JSON and .npy agree, "
        f"{int(npy.is_anomaly.sum())} flagged at threshold {npy.threshold:.4g}"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
