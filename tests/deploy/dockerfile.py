"""Just enough of a Dockerfile and .dockerignore reader to check ours without a Docker engine."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the logical line, continuations joined
    line: int  # 1-based line where it starts


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """ENV values of this stage (the `KEY=VALUE ...` form)."""
        values: dict[str, str] = {}
        for ins in self.all("ENV"):
            for token in shlex.split(ins.args):
                key, sep, value = token.partition("=")
                assert sep, f"line {ins.line}: use ENV KEY=VALUE, got {token!r}"
                values[key] = value
        return values

    def args(self) -> dict[str, str | None]:
        """ARG names of this stage with their defaults."""
        values: dict[str, str | None] = {}
        for ins in self.all("ARG"):
            key, sep, value = ins.args.partition("=")
            values[key.strip()] = value.strip().strip('"') if sep else None
        return values


@dataclass
class Dockerfile:
    global_args: dict[str, str | None]
    stages: dict[str, Stage]


def exec_form(ins: Instruction) -> list[str]:
    """The JSON array of an exec-form CMD / ENTRYPOINT / HEALTHCHECK CMD."""
    text = ins.args
    if ins.keyword == "HEALTHCHECK":
        text = text[text.index("CMD") + 3 :]
    value = json.loads(text)
    assert isinstance(value, list), f"line {ins.line}: not exec form"
    assert all(isinstance(v, str) for v in value), f"line {ins.line}: not exec form"
    return value


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join `\\` continuations, drop comments and blank lines; keep the starting line number."""
    lines: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if not current:
            start = number
        if stripped.endswith("\\"):
            current.append(stripped[:-1].strip())
            continue
        current.append(stripped)
        lines.append((start, " ".join(part for part in current if part)))
        current = []
    assert not current, "the Dockerfile ends inside a continued line"
    return lines


def parse(path: Path) -> Dockerfile:
    global_args: dict[str, str | None] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for number, line in logical_lines(path.read_text()):
        keyword, _, args = line.partition(" ")
        ins = Instruction(keyword.upper(), args.strip(), number)
        if ins.keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", ins.args, re.IGNORECASE)
            assert m, f"line {number}: cannot read FROM {ins.args!r}"
            name = m.group(2) or str(len(stages))
            assert name not in stages, f"line {number}: stage {name!r} defined twice"
            stage = stages[name] = Stage(name, m.group(1))
        elif stage is None:
            assert ins.keyword == "ARG", f"line {number}: {ins.keyword} before the first FROM"
            key, sep, value = ins.args.partition("=")
            global_args[key.strip()] = value.strip() if sep else None
        else:
            stage.instructions.append(ins)
    return Dockerfile(global_args, stages)


def copy_sources(ins: Instruction) -> list[str]:
    """The build-context sources of a COPY/ADD (none for `--from=`)."""
    tokens = shlex.split(ins.args)
    flags = [t for t in tokens if t.startswith("--")]
    if any(f.startswith("--from=") for f in flags):
        return []
    paths = [t for t in tokens if not t.startswith("--")]
    assert len(paths) >= 2, f"line {ins.line}: COPY needs a source and a destination"
    return paths[:-1]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore `patterns` leave `path` (relative, `/`-separated) out of the context.

    Rules as Docker applies them: the last matching pattern wins, `!` re-includes, and a pattern
    that matches a parent folder matches everything under it.
    """
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        if pattern.startswith("**/"):
            tail = pattern[3:]
            hit = any(fnmatch.fnmatchcase(c.split("/")[-1], tail) for c in candidates)
        else:
            hit = any(fnmatch.fnmatchcase(c, pattern) for c in candidates)
        if hit:
            result = not negate
    return result


def dockerignore(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
