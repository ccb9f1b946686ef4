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


def test_column_errors_build_their_messages_and_details() -> None:
    from service.errors import BadCell, ColumnsMismatch, NoFeatureNames, RecordKeysDiffer
    from service.protocols.v2 import V2

    exc = ColumnsMismatch("inputs", ["b"], ["id", "x"], "m", 2)
    assert exc.status_code == 422 and V2.status(exc) == 400
    assert exc.message == (
        "model 'm' version 2: inputs: missing feature column 'b'; unknown columns 'id', 'x' "
        "(the model has no such feature; leave it out of the request)"
    )
    assert error_body(exc)["error"]["details"] == {"missing": ["b"], "unknown": ["id", "x"]}
    many = ColumnsMismatch("body", [f"f{i}" for i in range(8)], [], "m", 1)
    assert "'f4' and 3 more" in many.message and "unknown" not in many.message
    assert "records no feature names" in NoFeatureNames("inputs", "m", 1).message
    keys = RecordKeysDiffer("inputs", 3, ["a"], ["z"])
    assert keys.message == (
        "inputs: row 3 has other keys than row 0: it lacks 'a' and adds 'z'; "
        "every row by name has the same keys"
    )
    assert (
        BadCell("body", "line 4", "a", "").message == "body: line 4: column 'a' is empty, not a finite number"
    )
    assert BadCell("inputs", "row 0", "a", None).message.endswith("column 'a' is null, not a finite number")
    assert BadCell("inputs", "row 0", "a", False).details == {"where": "row 0", "column": "a"}
