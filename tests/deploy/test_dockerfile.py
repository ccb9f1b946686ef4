"""The Dockerfile without a Docker engine: stages, sources, the serve image's contract, and its command
started for real, outside Docker, exactly as the image would start it."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.settings import Settings
from tests.deploy import dockerfile
from tests.deploy.dockerfile import Dockerfile, exec_form
from tests.deploy.live import ROOT, clean_env, free_port, running


def test_stages_and_bases(image: Dockerfile) -> None:
    assert list(image.stages) == ["builder", "serve", "train"]
    version = image.global_args["PYTHON_VERSION"]
    assert version is not None
    required = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert required is not None
    assert tuple(map(int, version.split("."))) >= (int(required[1]), int(required[2]))
    for stage in image.stages.values():
        assert stage.base == "python:${PYTHON_VERSION}-slim"


def test_copy_sources_exist_and_are_in_the_context(image: Dockerfile) -> None:
    patterns = dockerfile.dockerignore(ROOT / ".dockerignore")
    sources = [
        (ins.line, src)
        for stage in image.stages.values()
        for ins in stage.all("COPY") + stage.all("ADD")
        for src in dockerfile.copy_sources(ins)
    ]
    assert sources, "the builder copies the project in"
    for line, src in sources:
        assert (ROOT / src).exists(), f"Dockerfile line {line}: COPY source {src!r} does not exist"
        assert not dockerfile.ignored(src, patterns), f"line {line}: {src!r} is excluded by .dockerignore"
    # `pip wheel .` needs everything pyproject.toml names
    copied = {src for _, src in sources}
    assert {"pyproject.toml", "README.md", "core", "service", "training"} <= copied


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = dockerfile.dockerignore(ROOT / ".dockerignore")
    for path in [
        ".venv/bin/python",
        ".git/HEAD",
        "models/digits-pca/1/manifest.json",
        "tests/conftest.py",
        "service/__pycache__/app.cpython-311.pyc",
        "latentserve.egg-info/PKG-INFO",
        "client/latentserve_client/_client.py",  # its own distribution; the images ship the server
    ]:
        assert dockerfile.ignored(path, patterns), path
    for path in [
        "service/app.py",
        "core/latentserve_core/runtime/base.py",
        "core/pyproject.toml",
        "training/cli.py",
        "pyproject.toml",
    ]:
        assert not dockerfile.ignored(path, patterns), path


def test_stage_references_exist(image: Dockerfile) -> None:
    for stage in image.stages.values():
        for ins in stage.instructions:
            for ref in re.findall(r"--(?:mount=[^ ]*?)?from=([\w.-]+)", ins.args):
                assert ref in image.stages, f"line {ins.line}: unknown stage {ref!r}"
                assert list(image.stages).index(ref) < list(image.stages).index(stage.name)


def _runs(image: Dockerfile, name: str) -> str:
    return "\n".join(ins.args for ins in image.stages[name].all("RUN"))


def test_serve_stage_installs_the_base_only(image: Dockerfile) -> None:
    runs = _runs(image, "serve")
    assert "torch" not in runs.lower()
    assert "[train]" not in runs and "[dev]" not in runs
    assert not re.search(r"build-essential|\bgcc\b|\bg\+\+|\bclang\b", runs), "no compiler in the final stage"
    # only the builder's wheels: nothing from an index, nothing copied into a layer
    assert "pip install --no-index --find-links /wheels" in runs
    assert "from=builder" in runs
    assert not image.stages["serve"].all("COPY")
    assert "build-essential" in _runs(image, "builder")
    assert "pip wheel" in _runs(image, "builder")


def test_base_dependencies_carry_no_torch() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    base = text[text.index("dependencies = [") : text.index("[project.optional-dependencies]")]
    assert "torch" not in base.lower()


@pytest.mark.parametrize("name", ["serve", "train"])
def test_runs_as_a_non_root_user(image: Dockerfile, name: str) -> None:
    user = image.stages[name].last("USER")
    assert user is not None, f"{name}: no USER"
    who = user.args.split(":")[0]
    assert who not in ("root", "0"), f"{name}: USER {user.args}"
    # the user is created in the same stage, with that uid
    assert f"--uid {who}" in _runs(image, name)
    assert user.line > max(i.line for i in image.stages[name].all("RUN")), "USER after the installs"


def test_serve_settings_come_from_env(image: Dockerfile) -> None:
    env = image.stages["serve"].env()
    fields = set(Settings.model_fields)
    for key in env:
        if key.startswith("LATENTSERVE_"):
            assert key.removeprefix("LATENTSERVE_").lower() in fields, f"{key} is not a Settings field"
    assert env["LATENTSERVE_HOST"] == "0.0.0.0"
    assert env["LATENTSERVE_MODELS_DIR"] == "/models"
    assert int(env["LATENTSERVE_PORT"]) == Settings.model_fields["port"].default == 8000
    expose = image.stages["serve"].last("EXPOSE")
    assert expose is not None and expose.args == env["LATENTSERVE_PORT"]


def test_serve_entrypoint_is_python_m_service(image: Dockerfile) -> None:
    entry = image.stages["serve"].last("ENTRYPOINT")
    assert entry is not None and exec_form(entry) == ["python", "-m", "service"]
    assert image.stages["serve"].last("CMD") is None, "flags go after the entrypoint, settings in env"


def test_healthcheck_targets_the_readiness_route(image: Dockerfile, served_paths: set[str]) -> None:
    check = image.stages["serve"].last("HEALTHCHECK")
    assert check is not None
    argv = exec_form(check)
    assert argv[:2] == ["python", "-c"], "curl is not in the slim image; python is"
    assert "/health/ready" in argv[2] and "/health/ready" in served_paths
    assert "LATENTSERVE_PORT" in argv[2] and "'8000'" in argv[2]
    for option in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert option in check.args


def test_train_stage(image: Dockerfile) -> None:
    train = image.stages["train"]
    args = train.args()
    # CPU torch by default: the pin scripts/setup.sh installs on a machine without a GPU
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    pinned = re.search(r'torch_spec="(torch==[^"]+)"', setup)
    assert pinned is not None and args["TORCH_SPEC"] == pinned.group(1)
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    runs = _runs(image, "train")
    assert '"${TORCH_SPEC}"' in runs and '"${TORCH_INDEX_URL}"' in runs
    assert "[train]" in runs
    entry, cmd = train.last("ENTRYPOINT"), train.last("CMD")
    assert entry is not None and exec_form(entry) == ["python", "-m", "training"]
    assert cmd is not None and exec_form(cmd) == ["bootstrap", "--models-dir", "/models"]


def test_trainer_command_is_the_one_run_sh_runs(image: Dockerfile) -> None:
    """scripts/run.sh runs `python -m training bootstrap --models-dir DIR`; the image does the same."""
    run_sh = (ROOT / "scripts" / "run.sh").read_text()
    line = next(ln for ln in run_sh.splitlines() if "-m training" in ln)
    words = shlex.split(line)
    sub = words[words.index("training") + 1 :]
    cmd = image.stages["train"].last("CMD")
    assert cmd is not None
    assert sub[0] == exec_form(cmd)[0] == "bootstrap"
    assert sub[1] == exec_form(cmd)[1] == "--models-dir"


def test_image_command_serves_outside_docker(image: Dockerfile, tiny_registry: Path, tmp_path: Path) -> None:
    """Start exactly the serve image's ENTRYPOINT + CMD with its ENV (port and registry changed only)."""
    serve = image.stages["serve"]
    entry = serve.last("ENTRYPOINT")
    assert entry is not None
    cmd = serve.last("CMD")
    argv = exec_form(entry) + (exec_form(cmd) if cmd is not None else [])
    assert argv[0] == "python"
    argv[0] = sys.executable
    port = free_port()
    env = clean_env(**serve.env())
    env.update(LATENTSERVE_PORT=str(port), LATENTSERVE_MODELS_DIR=str(tiny_registry))
    url = f"http://127.0.0.1:{port}"
    with running(argv, env, url, tmp_path / "serve.log"):
        models = httpx.get(f"{url}/models", timeout=5).json()["models"]
        assert [m["name"] for m in models] == ["digits-pca"]
        assert models[0]["versions"][0]["status"] == "ready"
        # the HEALTHCHECK command itself passes against the running service...
        check = serve.last("HEALTHCHECK")
        assert check is not None
        probe = [sys.executable, *exec_form(check)[1:]]
        assert subprocess.run(probe, env=env, timeout=10).returncode == 0
    # ... and fails once it is gone
    done = subprocess.run(probe, env=env, timeout=10, capture_output=True)
    assert done.returncode != 0
