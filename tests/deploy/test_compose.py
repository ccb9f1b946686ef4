"""docker-compose.yml, deploy/nginx.conf and deploy/kubernetes.yaml without an engine: every path,
port, variable, target and command they name exists and agrees with the service's settings."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings
from tests.deploy.dockerfile import Dockerfile, exec_form
from tests.deploy.live import ROOT

PORT = Settings.model_fields["port"].default
INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def resolve(text: str) -> str:
    """A compose value with every `${VAR:-default}` replaced by its default (the fresh-machine value)."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", text)


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services = compose["services"]
    assert name in services, f"no service {name!r}"
    value: dict[str, Any] = services[name]
    return value


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings the service builds from exactly `env`."""
    for key in [k for k in Settings.model_fields]:
        monkeypatch.delenv(f"LATENTSERVE_{key.upper()}", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def mounts(svc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """target -> (source, mode) of a service's short-syntax volumes."""
    out = {}
    for spec in svc.get("volumes", []):
        source, target, *mode = spec.split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"trainer", "api", "trainer-gpu", "lb"}
    # `docker compose up` on a fresh machine: trainer + api; gpu and lb only when asked for
    assert "profiles" not in services["trainer"] and "profiles" not in services["api"]
    assert services["trainer-gpu"]["profiles"] == ["gpu"]
    assert services["lb"]["profiles"] == ["lb"]


def test_build_targets_exist(compose: dict[str, Any], image: Dockerfile) -> None:
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build is None:
            continue
        assert (ROOT / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        assert build["target"] in image.stages, f"{name}: no stage {build['target']!r}"
        declared = image.stages[build["target"]].args()
        for arg in build.get("args", {}):
            assert arg in declared, f"{name}: build arg {arg} is not an ARG of {build['target']}"
    assert service(compose, "api")["build"]["target"] == "serve"
    assert service(compose, "trainer")["build"]["target"] == "train"


def test_volumes_are_declared(compose: dict[str, Any]) -> None:
    named = set(compose["volumes"])
    for name, svc in compose["services"].items():
        for target, (source, _) in mounts(svc).items():
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source!r} is not declared"
            assert target.startswith("/")
    assert mounts(service(compose, "api"))["/models"] == ("models", "ro")
    assert mounts(service(compose, "trainer"))["/models"] == ("models", "rw")
    assert mounts(service(compose, "trainer-gpu"))["/models"] == ("models", "rw")


def test_trainer_runs_the_bootstrap_of_run_sh(compose: dict[str, Any], image: Dockerfile) -> None:
    trainer = service(compose, "trainer")
    cmd = image.stages["train"].last("CMD")
    assert cmd is not None
    assert trainer["command"] == exec_form(cmd) == ["bootstrap", "--models-dir", "/models"]
    run_sh = (ROOT / "scripts" / "run.sh").read_text()
    assert re.search(r"-m training bootstrap --models-dir ", run_sh)
    # it writes where it mounts the volume, and the api reads from there
    assert trainer["command"][2] in mounts(trainer)
    assert trainer["restart"] == "no"


def test_api_waits_for_the_trainer(compose: dict[str, Any]) -> None:
    api = service(compose, "api")
    assert api["depends_on"] == {"trainer": {"condition": "service_completed_successfully"}}
    assert api["restart"] == "on-failure"


def test_api_environment_is_settings(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: resolve(str(v)) for k, v in service(compose, "api")["environment"].items()}
    fields = set(Settings.model_fields)
    for key in env:
        assert key.startswith("LATENTSERVE_"), key
        assert key.removeprefix("LATENTSERVE_").lower() in fields, f"{key} is not a Settings field"
    settings = settings_from(env, monkeypatch)
    assert settings.host == "0.0.0.0"
    assert settings.port == PORT
    assert str(settings.models_dir) in mounts(service(compose, "api"))
    assert settings.api_key is None, "an empty LATENTSERVE_API_KEY would demand the empty key"
    assert settings.allow_pickle, "the trainer's kernel-pca defaults are joblib-only"


def test_api_ports(compose: dict[str, Any]) -> None:
    api = service(compose, "api")
    assert api["expose"] == [str(PORT)]
    (published,) = api["ports"]
    # one replica by default on the settings' port...
    assert resolve(published) == f"{PORT}:{PORT}"
    # ...and LATENTSERVE_API_PUBLISH=8000 publishes the container port only, so replicas can scale
    m = INTERPOLATION.fullmatch(published)
    assert m is not None and m.group(1) == "LATENTSERVE_API_PUBLISH"
    readme = (ROOT / "README.md").read_text()
    assert f"LATENTSERVE_API_PUBLISH={PORT} docker compose --profile lb up" in readme


def test_api_healthcheck(compose: dict[str, Any], served_paths: set[str]) -> None:
    check = service(compose, "api")["healthcheck"]
    assert check["test"][:3] == ["CMD", "python", "-c"]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]+)", check["test"][3])
    assert url is not None
    assert int(url.group(1)) == PORT and url.group(2) == "/health/ready" in served_paths


def test_gpu_trainer(compose: dict[str, Any]) -> None:
    gpu = service(compose, "trainer-gpu")
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["build"]["args"]["TORCH_SPEC"] == "torch"  # the CUDA build from PyPI
    assert gpu["build"]["args"]["TORCH_INDEX_URL"] == "https://pypi.org/simple"
    assert gpu["depends_on"] == {"trainer": {"condition": "service_completed_successfully"}}
    assert gpu["command"][0] in ("list", "bootstrap", "fit", "show")


def nginx_conf() -> str:
    return (ROOT / "deploy" / "nginx.conf").read_text()


def test_lb(compose: dict[str, Any]) -> None:
    lb = service(compose, "lb")
    conf = nginx_conf()
    assert mounts(lb)["/etc/nginx/nginx.conf"] == ("./deploy/nginx.conf", "ro")
    # upstream: the api service by Docker DNS name on the settings' port, re-resolved
    assert re.search(rf"server api:{PORT} resolve\b", conf)
    assert "resolver 127.0.0.11" in conf
    major, minor = (int(x) for x in re.fullmatch(r"nginx:(\d+)\.(\d+)-alpine", lb["image"]).groups())  # type: ignore[union-attr]
    assert (major, minor) >= (1, 27), "`resolve` in an upstream needs open-source nginx >= 1.27.3"
    listen = re.search(r"listen (\d+);", conf)
    assert listen is not None
    (published,) = lb["ports"]
    assert resolve(published).split(":")[-1] == listen.group(1)
    assert lb["depends_on"] == {"api": {"condition": "service_healthy"}}
    health = lb["healthcheck"]["test"][-1]
    assert health.endswith("/lb/health") and "location = /lb/health" in conf


def test_nginx_body_limit_matches_settings() -> None:
    m = re.search(r"client_max_body_size (\d+)m;", nginx_conf())
    assert m is not None and int(m.group(1)) << 20 == Settings.model_fields["max_body_bytes"].default


def test_nginx_braces_balance() -> None:
    text = re.sub(r"#.*", "", nginx_conf())
    depth = 0
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    for statement in re.split(r"[{}]", text):
        for line in statement.strip().splitlines():
            line = line.strip()
            assert (
                not line
                or line.endswith(";")
                or line.startswith(("location", "upstream", "server", "http", "events"))
            ), line


def test_kubernetes_manifest(
    compose: dict[str, Any], served_paths: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text())}
    assert set(docs) == {"PersistentVolumeClaim", "Job", "Deployment", "Service"}
    claim = docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert "ReadOnlyMany" in docs["PersistentVolumeClaim"]["spec"]["accessModes"]

    job = docs["Job"]["spec"]["template"]["spec"]
    (trainer,) = job["containers"]
    assert trainer["args"] == service(compose, "trainer")["command"]
    assert job["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim

    deployment = docs["Deployment"]["spec"]
    assert deployment["replicas"] > 1
    pod = deployment["template"]["spec"]
    (api,) = pod["containers"]
    env = {e["name"]: e["value"] for e in api["env"]}
    settings = settings_from(env, monkeypatch)
    assert settings.port == api["ports"][0]["containerPort"] == PORT
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready" in served_paths
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live" in served_paths
    assert api["volumeMounts"][0] == {
        "name": "models",
        "mountPath": str(settings.models_dir),
        "readOnly": True,
    }
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_readme_deploy_section() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Deploy") :]
    for needle in [
        "docker compose up",
        "--profile gpu",
        "--profile lb",
        "--scale api=",
        "kubectl apply",
        "/health/ready",
        "/health/live",
        "ReadOnlyMany",
    ]:
        assert needle in section, needle


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the docker compose plugin is not installed",
)
def test_docker_compose_config_validates(tmp_path: Path) -> None:
    for profile in ([], ["--profile", "gpu"], ["--profile", "lb"]):
        done = subprocess.run(
            ["docker", "compose", *profile, "config", "--quiet"], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
