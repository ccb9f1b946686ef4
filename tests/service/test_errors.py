"""Errors about one model version name it themselves (`LatentServeError(model=, version=)`)."""

from __future__ import annotations

from service.errors import IntegrityError, ModelUnavailable, error_body


def test_an_error_about_a_model_version_names_it_first() -> None:
    exc = IntegrityError("file 'encoder.onnx' is missing", field="files", model="digits-pca", version=3)
    assert exc.message == "model 'digits-pca' version 3: file 'encoder.onnx' is missing"
    assert (exc.model, exc.version) == ("digits-pca", 3)
    assert error_body(exc) == {"error": {"type": "IntegrityError", "message": exc.message, "field": "files"}}


def test_an_error_about_a_model_without_a_version_names_the_model() -> None:
    exc = ModelUnavailable("no version loaded", field="model", model="digits-pca")
    assert exc.message == "model 'digits-pca': no version loaded" and exc.status_code == 503
