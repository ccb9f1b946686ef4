"""The naive baseline: FastAPI + pydantic `List[List[float]]` + torch eager, as tutorials write it.

python benchmarks/naive_server.py --weights ae.pt --port 8001
"""

from __future__ import annotations

import argparse
from typing import List  # noqa: UP035  (the tutorial spelling, on purpose)

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from torch import nn


class AE(nn.Module):
    """The lecture's stacked autoencoder 784-100-30-100-784."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(784, 100), nn.SELU(), nn.Linear(100, 30), nn.SELU())
        self.decoder = nn.Sequential(nn.Linear(30, 100), nn.SELU(), nn.Linear(100, 784), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_hat: torch.Tensor = self.decoder(self.encoder(x))
        return x_hat


class ScoreRequest(BaseModel):
    model: str
    inputs: List[List[float]]  # noqa: UP006


class ScoreResponse(BaseModel):
    model: str
    scores: List[float]  # noqa: UP006
    threshold: float
    is_anomaly: List[bool]  # noqa: UP006


def build(weights: str, threshold: float) -> FastAPI:
    torch.set_num_threads(1)
    model = AE()
    model.load_state_dict(torch.load(weights))
    model.eval()
    app = FastAPI()

    @app.post("/anomaly-score", response_model=ScoreResponse)
    def anomaly_score(req: ScoreRequest) -> ScoreResponse:
        x = torch.tensor(req.inputs, dtype=torch.float32)
        with torch.no_grad():
            scores = ((model(x) - x) ** 2).mean(dim=1)
        s = scores.tolist()
        return ScoreResponse(
            model=req.model, scores=s, threshold=threshold, is_anomaly=[v > threshold for v in s]
        )

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--weights", required=True)
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--threshold", type=float, default=0.1)
    args = p.parse_args()
    uvicorn.run(
        build(args.weights, args.threshold),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
