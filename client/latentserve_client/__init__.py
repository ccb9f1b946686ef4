"""A client for latentserve: `Client` sends arrays as `.npy` and reads `.npy` / `.npz` answers.

Its own distribution (`pip install ./client`), needing only httpx and numpy; pyarrow only for
`.parquet` files (`pip install './client[parquet]'`). `latentserve-score INPUT ...` (or
`python -m latentserve_client score INPUT ...`) scores whole files (see `__main__`).
"""

from latentserve_client._client import AnomalyScores, Client, ClientError, ServiceUnreachable

__all__ = ["AnomalyScores", "Client", "ClientError", "ServiceUnreachable"]
