from __future__ import annotations


def test_metrics_count_requests_rows_errors_and_latency(make_client, digits):
    with make_client() as c:
        c.post("/encode", json={"model": "digits-pca", "inputs": digits[:3].tolist()})
        c.post("/encode", json={"model": "digits-pca", "inputs": [[0.0] * 5]})
        c.post("/encode", json={"model": "made-up", "inputs": [[0.0] * 5]})
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'latentserve_requests_total{endpoint="encode",model="digits-pca",status="200"} 1.0' in text
    assert 'latentserve_requests_total{endpoint="encode",model="digits-pca",status="422"} 1.0' in text
    assert 'latentserve_rows_total{endpoint="encode",model="digits-pca"} 3.0' in text
    assert 'latentserve_errors_total{endpoint="encode",model="digits-pca",type="InvalidInput"} 1.0' in text
    # unknown names never become labels
    assert "made-up" not in text
    assert 'latentserve_errors_total{endpoint="encode",model="<unknown>",type="ModelNotFound"} 1.0' in text
    assert (
        'latentserve_request_duration_seconds_bucket{endpoint="encode",le="0.005",model="digits-pca"}' in text
    )
    assert "latentserve_model_load_failures_total 1.0" in text  # the kernel PCA without pickle permission
    assert 'latentserve_model_versions{model="digits-kernel-pca",status="failed"} 1.0' in text
