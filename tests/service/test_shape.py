"""The serving core's shape, as the architecture pass left it (docs/architecture.md): short classes
and functions, and uvicorn's private names in one module."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"
MAX_CLASS_LINES = 200  # Settings, a data class of every LATENTSERVE_* variable, excepted
MAX_FUNCTION_LINES = 60


def _definitions() -> list[tuple[str, ast.AST]]:
    out: list[tuple[str, ast.AST]] = []
    for path in sorted(SERVICE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((str(path.relative_to(SERVICE.parent)), node))
    return out


def _lines(node: ast.AST) -> int:
    assert isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
    assert node.end_lineno is not None
    return node.end_lineno - node.lineno + 1


def test_no_class_over_200_lines_but_settings() -> None:
    classes = [(p, n) for p, n in _definitions() if isinstance(n, ast.ClassDef)]
    assert len(classes) > 50  # the walk saw the tree
    long = [f"{p}:{n.name}" for p, n in classes if _lines(n) > MAX_CLASS_LINES]  # type: ignore[attr-defined]
    assert set(long) <= {"service/settings.py:Settings"}


def test_no_function_over_60_lines() -> None:
    functions = [(p, n) for p, n in _definitions() if not isinstance(n, ast.ClassDef)]
    long = [f"{p}:{n.name} {_lines(n)}" for p, n in functions if _lines(n) > MAX_FUNCTION_LINES]  # type: ignore[attr-defined]
    assert long == []


def _uvicorn_private_names() -> set[str]:
    """The names uvicorn keeps private (a leading `_`) on the classes and modules we build on."""
    import uvicorn
    from uvicorn.middleware import proxy_headers
    from uvicorn.protocols.http import httptools_impl

    names: set[str] = set()
    for owner in (httptools_impl.HttpToolsProtocol, uvicorn.Server, uvicorn.Config, proxy_headers):
        names |= {n for n in dir(owner) if n.startswith("_") and not n.startswith("__")}
    names |= {n for n in dir(httptools_impl) if n.startswith("_") and not n.startswith("__")}
    return names


def test_uvicorns_private_names_are_used_in_one_module() -> None:
    """An attribute, override or import of a name uvicorn keeps private (which its next release may
    move) appears in `service/fastpath/protocol.py` alone; `compat.py` names them only as strings,
    to check them at start-up."""
    private = _uvicorn_private_names()
    assert {"_start_asgi_task", "_should_upgrade", "_TrustedHosts"} <= private
    users: dict[str, set[str]] = {}
    for path in sorted(SERVICE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        used = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in private:
                used.add(node.attr)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("uvicorn"):
                used |= {a.name for a in node.names if a.name in private}
        used |= own & private  # an override of a private method
        if used:
            users[str(path.relative_to(SERVICE.parent))] = used
    assert list(users) == ["service/fastpath/protocol.py"], users
