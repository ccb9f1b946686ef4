"""The uvicorn and httptools internals `python -m service` relies on, checked at start-up.

`service.fastpath.protocol` subclasses uvicorn's private `HttpToolsProtocol` and `service.server`
subclasses uvicorn's `Server`: pyproject pins uvicorn and httptools to the minor range they are
tested against (`TESTED`), and `http_protocol` checks, before the server starts, that every method
they override and every attribute they use is still there. When one of the protocol's is missing
`python -m service` refuses to start with FAST_PATH on, naming the fallback; with
LATENTSERVE_FAST_PATH=false it logs the problem and serves with uvicorn's own httptools protocol
(no fast path, and without the connection limits the subclass adds). When one of the server's is
missing it refuses to start, naming it, whatever FAST_PATH (the drain has no fallback). This module
imports nothing of uvicorn's internals at import time, so the check itself cannot fail on them.
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

# the uvicorn methods our subclasses override, each calling uvicorn's own (a test keeps these lists
# equal to what service.fastpath.protocol.LatentServeProtocol and service.server.DrainingServer define)
PROTOCOL_OVERRIDES = (
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
)
SERVER_OVERRIDES = ("__init__", "handle_exit", "on_tick", "shutdown")

# module -> names it must define; "Class.attr" names an attribute of a class, found on the class
# or assigned to `self` in one of its methods (instance attributes set in __init__ or per request).
# PROTOCOL: what service.fastpath.protocol uses (without it: uvicorn's own protocol, FAST_PATH=false)
PROTOCOL_REQUIRED: dict[str, tuple[str, ...]] = {
    "uvicorn.protocols.http.httptools_impl": (
        "STATUS_LINE",
        *(
            f"HttpToolsProtocol.{name}"
            for name in (
                # overridden, each calling uvicorn's own through super()
                *PROTOCOL_OVERRIDES,
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
                "pipeline",
                "expect_100_continue",
                "server_state",
                "access_log",
                "access_logger",
            )
        ),
        "RequestResponseCycle.response_complete",
        "RequestResponseCycle.keep_alive",
        "RequestResponseCycle.more_body",
        "RequestResponseCycle.disconnected",
        "RequestResponseCycle.message_event",
        "RequestResponseCycle.transport",
    ),
    "uvicorn.protocols.http.flow_control": (
        "FlowControl.pause_reading",
        "FlowControl.resume_reading",
        "FlowControl.read_paused",
        "FlowControl.write_paused",
    ),
    "uvicorn.server": ("ServerState.default_headers", "ServerState.total_requests"),
    "uvicorn.config": ("Config", "Config.limit_concurrency"),
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
# SERVER: what service.server's DrainingServer uses, whatever the protocol (no fallback: the drain
# on SIGTERM and the backlog served at shutdown need them)
SERVER_REQUIRED: dict[str, tuple[str, ...]] = {
    "uvicorn.server": (
        *(f"Server.{name}" for name in SERVER_OVERRIDES),
        "Server.config",
        "Server.should_exit",
        "Server.servers",
        "Server.server_state",
        "Server.lifespan",
    ),
    "uvicorn.config": ("Config.http_protocol_class",),
    "uvicorn.lifespan.on": ("LifespanOn.state",),
    "uvicorn.lifespan.off": ("LifespanOff.state",),
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


def missing(required: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """The internals in `required` (default: the protocol's and the server's) that the installed
    uvicorn / httptools lack, as `module.Name[.attr]`."""
    if required is None:
        return missing(PROTOCOL_REQUIRED) + missing(SERVER_REQUIRED)
    out: list[str] = []
    for module_name, names in required.items():
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
    lacking = missing(PROTOCOL_REQUIRED)
    if not lacking:
        return None
    return (
        f"the HTTP fast path (service.fastpath.protocol) needs uvicorn internals that {installed()} "
        f"lacks: {', '.join(lacking)}; install the pinned versions, or set {FALLBACK_SETTING} to "
        "serve through uvicorn's own protocol"
    )


def server_problem() -> str | None:
    """Why `service.server.DrainingServer` cannot run on the installed uvicorn, or None when it can."""
    lacking = missing(SERVER_REQUIRED)
    if not lacking:
        return None
    return (
        f"the draining server (service.server.DrainingServer) needs uvicorn internals that "
        f"{installed()} lacks: {', '.join(lacking)}; install the pinned versions (it has no fallback)"
    )


class UvicornInternalsError(RuntimeError):
    """The installed uvicorn lacks what the server needs, or what the fast path's protocol needs
    while FAST_PATH is on."""


def http_protocol(fast_path: bool) -> str:
    """The `http=` for uvicorn: our protocol when uvicorn has what it needs; else, with FAST_PATH on,
    raise UvicornInternalsError naming the fallback setting, and with it off, log and fall back.
    Raises UvicornInternalsError whatever FAST_PATH when the draining server's internals moved."""
    broken = server_problem()
    if broken is not None:
        raise UvicornInternalsError(broken)
    why = problem()
    if why is None:
        return PROTOCOL
    if fast_path:
        raise UvicornInternalsError(why)
    log.warning("%s; serving with uvicorn's %s protocol, without the fast path's limits", why, FALLBACK)
    return FALLBACK
