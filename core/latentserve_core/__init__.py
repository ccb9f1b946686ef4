"""latentserve's scoring core: the manifest contract, the anomaly score, and loading a version folder
with its sha256 checks. The service, `training` and the Spark scorer all import it; it needs numpy,
onnxruntime and pydantic only (no web framework, no torch).

    manifest   the registry contract (`Manifest`, `ScoreSpec`, `sha256_of`)
    layout     the registry folder: `<models>/<name>/<version>/manifest.json`, names and references
    runtime    `ModelRuntime` (validation, score, p-values written once) and one class per format
    errors     the typed errors the above raise
"""
