"""The DaskJob's containers as Kubernetes starts them: their environment and their command lines.

Shared by tests/k8s/test_manifests.py (the runner's command line for given inputs) and
tests/test_wheel_install.py (the runner, scheduler and worker run from an installed wheel).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASKJOB_TEMPLATE = ROOT / "k8s" / "base" / "recalculate" / "daskjob.yaml"
INPUTS_CONFIGMAP = ROOT / "k8s" / "base" / "inputs-configmap.yaml"
FEATURE_STORE_CONFIGMAP = ROOT / "k8s" / "base" / "feature-store-configmap.yaml"
# The inputs ConfigMap's entries and the `imagerank recalculate` flag each one becomes (besides `workdir`,
# which every pod reads as IMAGERANK_WORKDIR and the runner passes as --workdir).
INPUT_FLAGS = {"catalog": "--catalog", "images": "--images", "crawl": "--crawl", "ranks": "--ranks",
               "linkgraph": "--linkgraph"}
LIST_INPUTS = {"catalog", "crawl", "ranks", "linkgraph"}
K8S_REFERENCE = re.compile(r"\$\((\w+)\)")


def daskjob(path: Path = DASKJOB_TEMPLATE) -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return doc


def containers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The runner ("job"), scheduler and worker containers of a DaskJob."""
    cluster = doc["spec"]["cluster"]["spec"]
    return {"job": doc["spec"]["job"]["spec"]["containers"][0],
            "scheduler": cluster["scheduler"]["spec"]["containers"][0],
            "worker": cluster["worker"]["spec"]["containers"][0]}


def configmap_data(path: Path) -> tuple[str, dict[str, str]]:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return doc["metadata"]["name"], dict(doc.get("data", {}))


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined variable is replaced, an undefined reference stays as it is."""
    return K8S_REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def container_env(container: dict[str, Any], configmaps: dict[str, dict[str, str]],
                  secrets: dict[tuple[str, str], str], injected: dict[str, str] | None = None,
                  secret_envs: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """The variables Kubernetes sets in the container, in order: ``injected`` (what the operator adds, such
    as DASK_SCHEDULER_ADDRESS), then every key of each ``envFrom`` Secret (``secret_envs``: name -> data; an
    absent optional one sets nothing), then each env entry (a ConfigMap key that is absent and optional sets
    nothing)."""
    env = dict(injected or {})
    for source in container.get("envFrom", []):
        ref = source["secretRef"]
        if ref["name"] in (secret_envs or {}):
            env.update(secret_envs[ref["name"]])
        elif not ref.get("optional"):
            raise KeyError(f"envFrom: Secret {ref['name']} is missing and not optional")
    for entry in container.get("env", []):
        name = entry["name"]
        if "value" in entry:
            env[name] = expand(entry["value"], env)
            continue
        ref = entry["valueFrom"]
        if "configMapKeyRef" in ref:
            key_ref = ref["configMapKeyRef"]
            data = configmaps.get(key_ref["name"], {})
            if key_ref["key"] in data:
                env[name] = data[key_ref["key"]]
            elif not key_ref.get("optional"):
                raise KeyError(f"{name}: ConfigMap {key_ref['name']} has no key {key_ref['key']} and it is not optional")
        elif "secretKeyRef" in ref:
            key_ref = ref["secretKeyRef"]
            env[name] = secrets[key_ref["name"], key_ref["key"]]
        else:
            raise ValueError(f"{name}: unsupported valueFrom {ref}")
    return env


def command_line(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    return [expand(a, env) for a in list(container.get("command", [])) + list(container.get("args", []))]


def recorded_runner_argv(inputs: dict[str, str], tmp_path: Path, injected: dict[str, str] | None = None,
                         doc: dict[str, Any] | None = None, secret_envs: dict[str, dict[str, str]] | None = None
                         ) -> list[str]:
    """The arguments the runner container passes to `imagerank` when the inputs ConfigMap holds ``inputs``.

    The container's own command runs under /bin/sh with a stand-in `imagerank` first on PATH that records
    its arguments (NUL-separated) and its environment (``tmp_path/env``).
    """
    job = containers(doc or daskjob())["job"]
    name, _ = configmap_data(INPUTS_CONFIGMAP)
    env = container_env(job, {name: inputs}, secrets={("imagerank-redis", "password"): "example"},
                        injected=injected if injected is not None else {"DASK_SCHEDULER_ADDRESS": "tcp://scheduler:8786"},
                        secret_envs=secret_envs)
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "argv"
    stub = bin_dir / "imagerank"
    stub.write_text(f"#!/bin/sh\nenv > '{tmp_path / 'env'}'\nprintf '%s\\0' \"$@\" > '{record}'\n")
    stub.chmod(0o755)
    if record.exists():
        record.unlink()
    env = {**env, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(command_line(job, env), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return record.read_bytes().decode().split("\0")[:-1]
