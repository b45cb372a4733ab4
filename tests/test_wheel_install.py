"""The package as the image runs it: the wheel installed (not editable) into a fresh virtualenv.

The wheel is built from this checkout and installed with the pinned dependencies of requirements.lock
(uv, from its cache), as the Dockerfile installs it. Then the Kubernetes DaskJob's own containers run from
that virtualenv, outside the checkout: the scheduler and a worker with the command lines of
k8s/base/recalculate/daskjob.yaml, and the job runner with its command line and environment (inputs from
the ConfigMap, IMAGERANK_FEATURE_REPO, the Redis Secret), on a small generated catalog, against a real
redis-server and the cluster's feature_store.yaml from the ConfigMap. Paths the pods mount (/workdir,
/feature_repo, /scratch) and the Redis Service become directories and a port of this test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "k8s"))

from daskjob_runner import (FEATURE_STORE_CONFIGMAP, INPUTS_CONFIGMAP, command_line, configmap_data,  # noqa: E402
                            container_env, containers, daskjob)

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
TEST_LOCK = ROOT / "requirements-test.lock"
REDIS_PASSWORD = "wheel-test-password"


def run(argv: list, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, argv))} exited {done.returncode}:\n{done.stderr[-6000:]}"
    return done


def clean_env(venv: Path) -> dict[str, str]:
    """This machine's environment without the checkout's virtualenv or any imagerank/Dask settings."""
    own_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != own_bin]
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("IMAGERANK_", "DASK_", "PYTHON", "VIRTUAL_ENV", "FEAST_"))}
    return {**keep, "PATH": os.pathsep.join([str(venv / "bin"), *path])}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtualenv holding requirements.lock and the wheel built from this checkout."""
    from uv import find_uv_bin

    uv = find_uv_bin()
    tmp = tmp_path_factory.mktemp("wheel")
    run([uv, "build", "--wheel", "--out-dir", tmp / "dist", ROOT], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("imagerank-*.whl")
    venv = tmp / "venv"
    run([uv, "venv", "--quiet", "--python", sys.executable, venv], cwd=tmp)
    python = venv / "bin" / "python"
    run([uv, "pip", "install", "--quiet", "--python", python, "-r", LOCK], cwd=tmp)
    run([uv, "pip", "install", "--quiet", "--python", python, "--no-deps", wheel], cwd=tmp)
    return venv


def installed_paths(venv: Path, cwd: Path, **env) -> dict:
    code = ("import json, imagerank; from imagerank.store.feast_repo import default_feature_repo; "
            "print(json.dumps({'package': imagerank.__file__, 'feature_repo': str(default_feature_repo())}))")
    done = run([venv / "bin" / "python", "-c", code], cwd=cwd, env={**clean_env(venv), **env})
    return json.loads(done.stdout)


def source_files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def lock_pins(path: Path) -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            name, version = line.split(";")[0].strip().split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_files_pin_what_pyproject_asks_for():
    """Every dependency (and test tool) of pyproject.toml is pinned, at a version its specifier allows, and
    the test lock keeps the runtime lock's pins."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, test = lock_pins(LOCK), lock_pins(TEST_LOCK)
    for lock, requirements in ((runtime, project["dependencies"]),
                               (test, project["dependencies"] + project["optional-dependencies"]["test"])):
        for text in requirements:
            req = Requirement(text)
            name = canonicalize_name(req.name)
            assert name in lock, f"{req.name} is not in the lock: run `make lock`"
            assert req.specifier.contains(lock[name], prereleases=True), \
                f"{text} does not allow the locked {name}=={lock[name]}: run `make lock`"
    assert {n: v for n, v in test.items() if n in runtime} == runtime


@pytest.mark.slow
def test_the_installed_package_carries_the_feature_repository(venv, tmp_path):
    found = installed_paths(venv, tmp_path)
    site_packages = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert Path(found["package"]).is_relative_to(site_packages), found
    repo = Path(found["feature_repo"])
    assert repo == site_packages / "imagerank" / "feature_repo", found
    assert source_files(repo) == source_files(ROOT / "feature_repo")
    # Explicit configuration wins over the packaged copy.
    configured = installed_paths(venv, tmp_path, IMAGERANK_FEATURE_REPO="/feature_repo")
    assert configured["feature_repo"] == "/feature_repo"


@pytest.mark.slow
def test_the_lock_satisfies_the_project(venv):
    """Every dependency pyproject.toml declares is installed at a version it allows (uv pip check)."""
    from uv import find_uv_bin

    done = run([find_uv_bin(), "pip", "check", "--python", venv / "bin" / "python"], env=clean_env(venv))
    assert "All installed packages are compatible" in done.stdout + done.stderr, done.stdout + done.stderr


# ------------------------------------------------------------------------ the DaskJob, from the wheel

def start_redis(port: int, directory: Path) -> subprocess.Popen:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run `make system-deps`")
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--requirepass", REDIS_PASSWORD,
                             "--save", "", "--appendonly", "no", "--dir", str(directory), "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import redis

    client = redis.Redis(port=port, password=REDIS_PASSWORD)
    for _ in range(200):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
    pytest.fail("redis-server did not answer")


def with_options(argv: list[str], values: dict[str, str]) -> list[str]:
    """``argv`` with the value after each option in ``values`` replaced (every option must be present)."""
    out = list(argv)
    for option, value in values.items():
        out[out.index(option) + 1] = value
    return out


def mapped(text: str, mounts: dict[str, str]) -> str:
    for pod_path, here in mounts.items():
        text = text.replace(pod_path, here)
    return text


@pytest.mark.slow
def test_the_daskjob_runner_completes_from_the_installed_wheel(venv, tmp_path):
    import redis
    from distributed import Client
    from imagerank.store.redis_server import free_port

    job = daskjob()
    pods = containers(job)
    elsewhere = tmp_path / "elsewhere"  # every process runs here: not the checkout
    workdir, repo, scratch = tmp_path / "workdir", tmp_path / "feature_repo", tmp_path / "scratch"
    for d in (elsewhere, workdir, scratch):
        d.mkdir()
    redis_port, scheduler_port = free_port(), free_port()
    mounts = {"/workdir": str(workdir), "/feature_repo": str(repo), "/scratch": str(scratch),
              "imagerank-redis:6379": f"127.0.0.1:{redis_port}"}
    base_env = clean_env(venv)

    # /feature_repo as in the image: the repository with the cluster's feature_store.yaml mounted over it.
    packaged = Path(installed_paths(venv, elsewhere)["feature_repo"])
    shutil.copytree(packaged, repo)
    _, store_yaml = configmap_data(FEATURE_STORE_CONFIGMAP)
    (repo / "feature_store.yaml").write_text(store_yaml["feature_store.yaml"])
    assert yaml.safe_load(store_yaml["feature_store.yaml"])["online_store"]["type"] == "redis"

    # A small catalog with every input, made by the installed package.
    code = "import json, sys; from imagerank.demo import generate; print(json.dumps(generate(sys.argv[1], rows=120)))"
    sample = json.loads(run([venv / "bin" / "python", "-c", code, tmp_path / "inputs"], cwd=elsewhere,
                            env=base_env).stdout)
    inputs_name, _ = configmap_data(INPUTS_CONFIGMAP)
    inputs = {"workdir": "/workdir", "catalog": " ".join(sample["catalog"]), "images": sample["images"],
              "crawl": " ".join(sample["crawl"]), "ranks": " ".join(sample["ranks"])}

    address = f"tcp://127.0.0.1:{scheduler_port}"
    # What the Dask operator adds to each container's environment.
    injected = {"scheduler": {}, "worker": {"DASK_SCHEDULER_ADDRESS": address, "DASK_WORKER_NAME": "worker-0"},
                "job": {"DASK_SCHEDULER_ADDRESS": address}}
    secrets = {("imagerank-redis", "password"): REDIS_PASSWORD}

    def pod_env(role: str) -> dict[str, str]:
        env = container_env(pods[role], {inputs_name: inputs}, secrets, injected[role])
        return {**base_env, **{k: mapped(v, mounts) for k, v in env.items()}}

    scheduler_argv = with_options(command_line(pods["scheduler"], pod_env("scheduler")),
                                  {"--port": str(scheduler_port), "--dashboard-address": ":0"})
    worker_argv = with_options([mapped(a, mounts) for a in command_line(pods["worker"], pod_env("worker"))],
                               {"--dashboard-address": ":0"})  # the pod's two worker processes, as the manifest says
    redis_proc = start_redis(redis_port, tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    daemons = []
    try:
        for name, argv in (("scheduler", scheduler_argv), ("worker", worker_argv)):
            with (logs / f"{name}.log").open("w") as log:
                daemons.append(subprocess.Popen(argv, cwd=elsewhere, env=pod_env(name), stdout=subprocess.DEVNULL,
                                                stderr=log))
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(int(worker_argv[worker_argv.index("--nworkers") + 1]), timeout=180)

        run(command_line(pods["job"], pod_env("job")), cwd=elsewhere, env=pod_env("job"), timeout=1800)
        (manifest_path,) = [p for p in (workdir / "runs").glob("*.json") if p.name != "in-progress.json"]
        manifest = json.loads(manifest_path.read_text())
        assert "feast: apply + materialize" in manifest["timings_s"], manifest["timings_s"]
        rec = manifest["reconciliation"]
        assert rec["score_rows"] > 0 and rec["input_rows"] == rec["score_rows"] + rec["rejected_rows"], rec

        # Materialized into the Redis of the cluster's feature_store.yaml, and served from it.
        assert redis.Redis(port=redis_port, password=REDIS_PASSWORD).dbsize() > 0
        scores = pd.read_parquet(workdir / "scores").set_index("image_id")
        ids = list(scores.index[:5])
        lookup = subprocess.run(["imagerank", "lookup", "--workdir", str(workdir), *ids], cwd=elsewhere,
                                env=pod_env("job"), capture_output=True, text=True, timeout=600)
        assert lookup.returncode == 0, lookup.stderr[-4000:]
        rows = [json.loads(line) for line in lookup.stdout.splitlines()]
        assert [r["image_id"] for r in rows] == ids and all(r["found"] for r in rows), rows
        for row in rows:
            assert row["popularity"] == pytest.approx(scores.loc[row["image_id"], "popularity"], rel=1e-6), row
    finally:
        for proc in reversed(daemons):
            proc.terminate()
        for proc in daemons:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis_proc.terminate()
        redis_proc.wait(timeout=30)
