"""A client for latentserve: `Client` sends arrays as `.npy` and reads `.npy` / `.npz` answers.

Needs only httpx and numpy. `python -m service.client score ...` scores whole files (see `__main__`).
"""

from service.client._client import AnomalyScores, Client, ClientError, ServiceUnreachable

__all__ = ["AnomalyScores", "Client", "ClientError", "ServiceUnreachable"]
