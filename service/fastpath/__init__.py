"""The two shortcuts into the inference core (`service.inference`), beside the FastAPI routes.

Both serve exactly what the routes serve (`Dataplane.route`: `POST /encode`, `/decode`,
`/reconstruct`, `/anomaly-score`, `/sample`, `/v2/models/{m}[/versions/{v}]/infer`) through the same
dataplane (`Dataplane.ticket`, then `.infer`), which alone checks the API key, validates, scores and
builds every error; the routes stay the OpenAPI definitions
and the path taken with `LATENTSERVE_FAST_PATH=false`.

  - `asgi`: under any ASGI server (`uvicorn --factory service.app:create_app`, TestClient), the app
    hands those POSTs to the core before FastAPI's middleware, router and dependencies.
  - `protocol`: under `python -m service` only, a subclass of uvicorn's httptools protocol hands them
    to the core straight from the parser, without an ASGI request cycle; it only delegates, to the
    HTTP layer (`service.http`: the connection table, the guard, the body shortcut and the door
    into the core), which also holds the connection limits for every request. It uses uvicorn
    internals, so uvicorn and httptools are pinned to the tested minor range, and `compat` checks
    them at start-up: when they moved the server refuses to start, naming the fallback
    (LATENTSERVE_FAST_PATH=false, which then serves with uvicorn's own protocol).
"""
