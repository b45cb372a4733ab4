"""Safe defaults: no network unless asked, loopback-only services, verified models, confined image paths."""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzzkit import examples, tried
from imagerank.features.images import ImageError, ImageSource


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection is refused and fails the test, even when the code under
    test catches the error and falls back quietly."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise ConnectionRefusedError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield
    assert attempts == [], f"network access attempted: {attempts}"


def test_public_suffix_list_is_never_fetched(no_network, tmp_path, monkeypatch):
    import tldextract

    from imagerank import urls as U

    monkeypatch.setenv("HOME", str(tmp_path))  # no cache from an earlier run can hide a fetch
    assert U._EXTRACT.suffix_list_urls == ()
    fresh = tldextract.TLDExtract(suffix_list_urls=U._EXTRACT.suffix_list_urls, cache_dir=None,
                                  include_psl_private_domains=U._EXTRACT.include_psl_private_domains)
    assert fresh("live.staticflickr.com").top_domain_under_public_suffix == "staticflickr.com"
    assert fresh("a.b.example.co.uk").suffix == "co.uk"
    U.registered_domain.cache_clear()
    assert U.registered_domain("commons.wikimedia.org") == "wikimedia.org"
    assert U.registered_domain("www.bbc.co.uk") == "bbc.co.uk"


def test_web_image_templates_are_refused_unless_allowed(no_network):
    for template in ("http://img.example.org/{image_id}.jpg", "https://x/{image_id}", "ftp://x/{image_id}",
                     "HTTPS://x/{image_id}.jpg", "sftp://x/{image_id}"):
        with pytest.raises(ValueError, match="refusing"):
            ImageSource(template)
    assert ImageSource("https://img.example.org/{image_id}.jpg", allow_remote=True).protocol == "https"


def test_cluster_listens_on_loopback_only(dask_client):
    """The scheduler, the workers and the scheduler's HTTP endpoint (no dashboard is asked for) bind 127.0.0.1."""
    info = dask_client.scheduler_info()
    assert info["address"].startswith("tcp://127.0.0.1:")
    assert all(address.startswith("tcp://127.0.0.1:") for address in info["workers"])

    def http_hosts(dask_scheduler):
        server = getattr(dask_scheduler, "http_server", None)
        return sorted({s.getsockname()[0] for s in getattr(server, "_sockets", {}).values()})

    assert set(dask_client.run_on_scheduler(http_hosts)) <= {"127.0.0.1"}


def test_tampered_model_file_is_refused(tmp_path):
    """load_model checks the sha256 that training recorded before unpickling anything."""
    import joblib

    from imagerank.models.train import load_model

    path = tmp_path / "popularity.joblib"
    joblib.dump({"weights": [1, 2, 3]}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_model(tmp_path, "popularity", digest) == {"weights": [1, 2, 3]}

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    joblib.dump(Boom(), path)  # a hostile pickle in place of the model
    with pytest.raises(ValueError, match="refusing to load"):
        load_model(tmp_path, "popularity", digest)
    assert not (tmp_path / "pwned").exists()
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="refusing to load"):
        load_model(tmp_path, "popularity", digest)


def test_score_stage_loads_models_only_through_the_recorded_digest(tmp_path):
    import json

    import joblib

    from pipelines.score import load_models

    directory = tmp_path / "models" / "v1"
    directory.mkdir(parents=True)
    joblib.dump({"m": 1}, directory / "popularity.joblib")
    (directory / "metrics.json").write_text(json.dumps({"models": {"popularity": {"sha256": "0" * 64}}}))
    with pytest.raises(ValueError, match="refusing to load"):
        load_models(tmp_path, "v1")


# --------------------------------------------------------------------------------------------- image paths

@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("imgs")
    root = base / "root"
    (root / "flickr").mkdir(parents=True)
    (base / "secret.jpg").write_bytes(b"secret")
    (root / "flickr" / "link.jpg").symlink_to(base / "secret.jpg")
    (root / "flickr" / "ok.jpg").write_bytes(b"ok")
    return root


PATH_PARTS = st.sampled_from(["..", ".", "/", "//", "\\", "%2e%2e", "flickr", "ok", "link", ".jpg", "~", "$HOME",
                              "\x00", "{image_id}", "{0}", "etc", "passwd", "\u2025", "．．", "a", "/etc/passwd"])


@settings(max_examples=examples(4))
@given(st.lists(PATH_PARTS, max_size=6).map("".join), st.lists(PATH_PARTS, max_size=4).map("".join))
def test_catalog_values_never_escape_the_image_root(image_root, provider, image_id):
    tried("image_paths", (provider, image_id))
    source = ImageSource(str(image_root) + "/{provider}/{image_id}.jpg")
    row = {"provider": provider, "image_id": image_id}
    try:
        path = source.path_for(row)
    except ImageError as err:
        assert err.code == "path_escape"
        return
    real_root = os.path.realpath(image_root)
    assert os.path.commonpath([os.path.abspath(path), str(image_root)]) == str(image_root)
    try:
        data = source.read(row, 1000)
    except ImageError as err:
        assert err.code in ("path_escape", "missing", "read_error")
        return
    assert data == b"ok"
    assert os.path.commonpath([os.path.realpath(path), real_root]) == real_root


def test_symlink_and_dotdot_are_refused(image_root):
    source = ImageSource(str(image_root) + "/{provider}/{image_id}.jpg")
    for row in ({"provider": "flickr", "image_id": "link"}, {"provider": "..", "image_id": "secret"},
                {"provider": "flickr/../..", "image_id": "secret"}):
        with pytest.raises(ImageError) as err:
            source.read(row, 1000)
        assert err.value.code == "path_escape", row
    assert source.read({"provider": "flickr", "image_id": "ok"}, 1000) == b"ok"
    # an absolute value is taken relative to the root: it stays inside (and is missing there)
    assert source.path_for({"provider": "/etc", "image_id": "passwd"}) == str(image_root / "etc" / "passwd.jpg")
    bucket = ImageSource("s3://bucket/images/{image_id}.jpg")
    for image_id in ("../other/x", "../../etc/passwd", "a/../../b"):
        with pytest.raises(ImageError):
            bucket.path_for({"image_id": image_id})
    assert bucket.path_for({"image_id": str(uuid.UUID(int=1))}).startswith("bucket/images/")


def test_feast_serve_and_test_redis_default_to_loopback():
    """`feast serve` binds 127.0.0.1 unless --host is given (k8s passes 0.0.0.0 behind a ClusterIP Service);
    the test Redis helper binds loopback with protected mode."""
    import ast
    import importlib.util
    import inspect

    from imagerank.store import redis_server

    # read the installed `feast serve` command's --host default from its source (importing feast takes ~20 s)
    source = Path(importlib.util.find_spec("feast").origin).parent / "cli" / "serve.py"
    defaults = {}
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.FunctionDef):
            names = [d.args[0].value for d in node.decorator_list if isinstance(d, ast.Call) and d.args
                     and isinstance(d.args[0], ast.Constant) and getattr(d.func, "attr", "") == "command"]
            for d in node.decorator_list:
                if names and isinstance(d, ast.Call) and d.args and getattr(d.args[0], "value", None) == "--host":
                    defaults[names[0]] = next(k.value.value for k in d.keywords if k.arg == "default")
    assert defaults.get("serve") == "127.0.0.1", defaults
    assert inspect.signature(redis_server.start_redis_server).parameters["host"].default == "127.0.0.1"


def test_redis_password_lives_only_in_the_environment():
    """feature_store.redis.yaml reads the connection string (and its password) from IMAGERANK_REDIS."""
    from imagerank.store.feast_repo import default_feature_repo

    text = (default_feature_repo() / "feature_store.redis.yaml").read_text()
    config = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert any("connection_string: ${IMAGERANK_REDIS}" in line for line in config)
    assert not any("password" in line.lower() for line in config)
