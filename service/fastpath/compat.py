"""The uvicorn and httptools internals `service.fastpath.protocol` relies on, checked at start-up.

The protocol subclasses uvicorn's private `HttpToolsProtocol`: pyproject pins uvicorn and httptools
to the minor range it is tested against (`TESTED`), and `http_protocol` checks, before the server
starts, that every method and attribute the subclass uses is still there. When one is missing
`python -m service` refuses to start with FAST_PATH on, naming the fallback; with
LATENTSERVE_FAST_PATH=false it logs the problem and serves with uvicorn's own httptools protocol
(no fast path, and without the connection limits the subclass adds). This module imports nothing
of uvicorn's internals at import time, so the check itself cannot fail on them.
"""

from __future__ import annotations

import dis
import importlib
import logging
from importlib.metadata import PackageNotFoundError, version

log = logging.getLogger("latentserve.fastpath")

PROTOCOL = "service.fastpath.protocol:LatentServeProtocol"
FALLBACK = "httptools"  # uvicorn's own protocol, used with FAST_PATH=false when the internals moved
TESTED = {"uvicorn": "0.54", "httptools": "0.9"}  # the minor versions pyproject pins
FALLBACK_SETTING = "LATENTSERVE_FAST_PATH=false"

# module -> names it must define; "Class.attr" names an attribute of a class, found on the class
# or assigned to `self` in one of its methods (instance attributes set in __init__ or per request)
REQUIRED: dict[str, tuple[str, ...]] = {
    "uvicorn.protocols.http.httptools_impl": (
        "STATUS_LINE",
        *(
            f"HttpToolsProtocol.{name}"
            for name in (
                # overridden, each calling uvicorn's own through super()
                "__init__",
                "connection_made",
                "connection_lost",
                "data_received",
                "pause_writing",
                "resume_writing",
                "on_message_begin",
                "on_headers_complete",
                "on_body",
                "on_message_complete",
                "on_response_complete",
                "shutdown",
                "_should_upgrade",
                "_start_asgi_task",
                # called or read
                "_unset_keepalive_if_required",
                "app",
                "loop",
                "parser",
                "transport",
                "flow",
                "client",
                "url",
                "headers",
                "cycle",
                "expect_100_continue",
                "connections",
                "server_state",
                "access_log",
                "access_logger",
            )
        ),
        "RequestResponseCycle.response_complete",
        "RequestResponseCycle.keep_alive",
    ),
    "uvicorn.protocols.http.flow_control": (
        "FlowControl.pause_reading",
        "FlowControl.resume_reading",
        "FlowControl.read_paused",
    ),
    "uvicorn.server": (
        "ServerState.default_headers",
        "ServerState.connections",
        # service.server's shutdown serves the listener's backlog with a protocol it builds itself
        "Server.server_state",
        "Server.lifespan",
        "Server.shutdown",
    ),
    "uvicorn.config": ("Config", "Config.http_protocol_class"),
    "uvicorn.middleware.proxy_headers": (
        "ProxyHeadersMiddleware.trusted_hosts",
        "_TrustedHosts.get_trusted_client_address",
        "_TrustedHosts.__contains__",
    ),
    "httptools": (
        "parse_url",
        "HttpRequestParser.get_method",
        "HttpRequestParser.get_http_version",
        "HttpRequestParser.should_keep_alive",
        "HttpRequestParser.should_upgrade",
    ),
}


def _has(owner: object, attr: str) -> bool:
    """`attr` is on `owner`, or a method of `owner` (a class) assigns `self.attr`."""
    if hasattr(owner, attr):
        return True
    for value in vars(owner).values() if isinstance(owner, type) else ():
        code = getattr(value, "__code__", None)
        if code is not None and attr in code.co_names:
            stores = (i for i in dis.get_instructions(code) if i.opname == "STORE_ATTR")
            if any(i.argval == attr for i in stores):
                return True
    return False


def missing() -> list[str]:
    """The required internals the installed uvicorn / httptools lack, as `module.Name[.attr]`."""
    out: list[str] = []
    for module_name, names in REQUIRED.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            out.append(module_name)
            continue
        for name in names:
            owner_name, _, attr = name.partition(".")
            owner = getattr(module, owner_name, None)
            if owner is None or (attr and not _has(owner, attr)):
                out.append(f"{module_name}.{name}")
    return out


def installed() -> str:
    """The installed versions against the tested ones, e.g. "uvicorn 0.54.0 (tested 0.54.x)"."""
    parts = []
    for package, minor in TESTED.items():
        try:
            found = version(package)
        except PackageNotFoundError:
            found = "not installed"
        parts.append(f"{package} {found} (tested {minor}.x)")
    return ", ".join(parts)


def problem() -> str | None:
    """Why the protocol subclass cannot run on the installed uvicorn, or None when it can."""
    lacking = missing()
    if not lacking:
        return None
    return (
        f"the HTTP fast path (service.fastpath.protocol) needs uvicorn internals that {installed()} "
        f"lacks: {', '.join(lacking)}; install the pinned versions, or set {FALLBACK_SETTING} to "
        "serve through uvicorn's own protocol"
    )


class UvicornInternalsError(RuntimeError):
    """The installed uvicorn lacks what the fast path's protocol needs, and FAST_PATH is on."""


def http_protocol(fast_path: bool) -> str:
    """The `http=` for uvicorn: our protocol when uvicorn has what it needs; else, with FAST_PATH on,
    raise UvicornInternalsError naming the fallback setting, and with it off, log and fall back."""
    why = problem()
    if why is None:
        return PROTOCOL
    if fast_path:
        raise UvicornInternalsError(why)
    log.warning("%s; serving with uvicorn's %s protocol, without the fast path's limits", why, FALLBACK)
    return FALLBACK
