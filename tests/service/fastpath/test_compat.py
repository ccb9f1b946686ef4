"""The uvicorn internals our protocol and server subclasses use are there (`service.fastpath.compat`).

When uvicorn moves them, these tests fail naming the fallback (LATENTSERVE_FAST_PATH=false) and the
server refuses to start with the fast path on, instead of failing on the first request.
"""

from __future__ import annotations

import logging
from importlib.metadata import version

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.__main__ import main
from service.fastpath import compat


def test_the_installed_uvicorn_has_every_internal_the_protocol_uses() -> None:
    problem = compat.problem()
    if problem is not None:
        pytest.fail(problem)  # names the missing internals and LATENTSERVE_FAST_PATH=false


@pytest.mark.parametrize("package", sorted(compat.TESTED))
def test_the_installed_versions_are_the_tested_minor(package: str) -> None:
    found = version(package)
    if not found.startswith(compat.TESTED[package] + "."):
        pytest.fail(
            f"{package} {found} is not the tested {compat.TESTED[package]}.x that pyproject pins; run "
            f"tests/service/fastpath and update compat.TESTED, or serve with {compat.FALLBACK_SETTING}"
        )


def test_the_check_sees_a_method_that_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(HttpToolsProtocol, "_unset_keepalive_if_required")
    assert compat.missing() == [
        "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol._unset_keepalive_if_required"
    ]
    problem = compat.problem()
    assert problem is not None and "LATENTSERVE_FAST_PATH=false" in problem
    assert "_unset_keepalive_if_required" in problem and "uvicorn 0." in problem


def test_the_check_sees_an_instance_attribute_no_longer_set(monkeypatch: pytest.MonkeyPatch) -> None:
    def connection_made(self: HttpToolsProtocol, transport: object) -> None:
        self.transport = transport  # type: ignore[assignment]  # and no self.flow any more

    for name in ("__init__", "connection_made"):
        original = vars(HttpToolsProtocol)[name]
        assert "flow" in original.__code__.co_names
    monkeypatch.setattr(HttpToolsProtocol, "connection_made", connection_made)
    monkeypatch.setattr(HttpToolsProtocol, "__init__", lambda self, *a: None)
    lacking = compat.missing()
    assert "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol.flow" in lacking


def test_with_the_fast_path_on_the_server_refuses_to_start_naming_the_fallback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delattr(HttpToolsProtocol, "_unset_keepalive_if_required")
    monkeypatch.setenv("LATENTSERVE_FAST_PATH", "true")
    assert main(["--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "LATENTSERVE_FAST_PATH=false" in err and "_unset_keepalive_if_required" in err


def test_with_the_fast_path_off_it_falls_back_to_uvicorns_protocol(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert compat.http_protocol(fast_path=False) == compat.PROTOCOL  # internals there: ours
    monkeypatch.delattr(HttpToolsProtocol, "_unset_keepalive_if_required")
    with caplog.at_level(logging.WARNING, "latentserve.fastpath"):
        assert compat.http_protocol(fast_path=False) == "httptools"
    assert "LATENTSERVE_FAST_PATH=false" in caplog.text
    with pytest.raises(compat.UvicornInternalsError, match="LATENTSERVE_FAST_PATH=false"):
        compat.http_protocol(fast_path=True)


def _overrides(ours: type, base: type) -> set[str]:
    """The methods `ours` defines that `base` (or a class above it) defines too."""
    return {name for name, value in vars(ours).items() if callable(value) and hasattr(base, name)}


def test_every_override_of_our_subclasses_is_checked() -> None:
    import uvicorn

    from service.fastpath.protocol import LatentServeProtocol, UvicornWire
    from service.server import DrainingServer

    assert _overrides(UvicornWire, HttpToolsProtocol) == set()  # the wire adds, it overrides nothing
    assert _overrides(LatentServeProtocol, HttpToolsProtocol) == set(compat.PROTOCOL_OVERRIDES)
    assert _overrides(DrainingServer, uvicorn.Server) == set(compat.SERVER_OVERRIDES)


@pytest.mark.parametrize("name", ["on_tick", "handle_exit", "shutdown"])
def test_a_server_override_that_moved_stops_the_start_whatever_the_fast_path(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    import uvicorn

    monkeypatch.delattr(uvicorn.Server, name)
    assert compat.missing() == [f"uvicorn.server.Server.{name}"]
    assert compat.problem() is None  # the protocol's own internals are all there
    for fast_path in (True, False):
        with pytest.raises(compat.UvicornInternalsError, match=f"DrainingServer.*Server.{name}"):
            compat.http_protocol(fast_path)
    monkeypatch.setenv("LATENTSERVE_FAST_PATH", "false")
    assert main(["--port", "0"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and f"uvicorn.server.Server.{name}" in line
    assert "service.server.DrainingServer" in line and "uvicorn 0." in line


def test_the_server_check_sees_an_attribute_no_longer_set(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "__init__", lambda self, config: None)  # no self.server_state
    lacking = compat.missing()
    assert "uvicorn.server.Server.server_state" in lacking and "uvicorn.server.Server.config" in lacking
    assert compat.server_problem() is not None
