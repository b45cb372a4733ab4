"""Every field a Feast view serves has the type its dataset's writer produces.

Two halves: the views in ``feature_repo/views.py`` declare, field by field, the Feast type of the writer's
Arrow schema (checked against an explicit table here, not against the helper the views use); and each
writer's partition function really produces its schema's types (run on small real inputs, stamped with the
run's event time as the pipelines do). A writer that changes a column's type fails the second half; a
view edited by hand to another type fails the first.
"""

from __future__ import annotations

import importlib
import json

import pandas as pd
import pyarrow as pa
import pytest
from feast import FeatureView
from feast import types as F

from imagerank.features import domains as D
from imagerank.features import links as L
from imagerank.features import visual as V
from imagerank.features.exif import EXIF_META, EXIF_SCHEMA
from imagerank.features.metadata import METADATA_SCHEMA, metadata_features
from imagerank.features.pixels import PIXELS_META, PIXELS_SCHEMA
from imagerank.graph.build import pages_frame
from imagerank.graph.synthetic import demo_pages, write_demo_warc
from imagerank.graph.warc import extract_file
from imagerank.io import with_timestamp
from imagerank.schemas import EVENT_TIME, feast_type, with_event_time
from imagerank.scoring import SCORE_FEATURES, SCORES_SCHEMA, score_partition
from imagerank.store.feast_repo import default_feature_repo

NOW = pd.Timestamp("2026-11-29", tz="UTC")
#: The only Arrow -> Feast pairs a served column may have (Feast has no 8/16-bit integers).
SERVABLE = {pa.string(): F.String, pa.bool_(): F.Bool, pa.int32(): F.Int32, pa.int64(): F.Int64,
            pa.float32(): F.Float32, pa.float64(): F.Float64}
#: view -> the schema of the dataset it reads, as written (event time included).
WRITTEN = {
    "image_scores": SCORES_SCHEMA,
    "image_metadata": with_event_time(METADATA_SCHEMA),
    "image_domain": D.DOMAINS_DATASET_SCHEMA,
    "domain_stats": D.DOMAIN_STATS_SCHEMA,
    "image_pixels": PIXELS_SCHEMA,
    "image_exif": EXIF_SCHEMA,
    "image_links": with_event_time(L.LINKS_SCHEMA),
    "image_visual": with_event_time(V.VISUAL_SCHEMA),
}


@pytest.fixture(scope="module")
def views():
    import sys

    repo = str(default_feature_repo())
    sys.path.insert(0, repo)
    try:
        module = importlib.import_module("views")
        return {v.name: v for v in vars(module).values() if isinstance(v, FeatureView)}
    finally:
        sys.path.remove(repo)


def test_every_view_field_has_its_writers_type(views):
    assert set(views) == set(WRITTEN)
    for name, view in views.items():
        schema = WRITTEN[name]
        for field in view.schema:
            assert field.name in schema.names, f"{name}.{field.name} is not written"
            written = schema.field(field.name).type
            assert written in SERVABLE, f"{name}.{field.name}: Feast cannot serve {written}"
            assert field.dtype == SERVABLE[written], f"{name}.{field.name}: view {field.dtype}, written {written}"


def test_image_scores_serve_every_score_column(views):
    assert sorted(f.name for f in views["image_scores"].schema) == sorted(SCORE_FEATURES)
    assert sorted(SCORE_FEATURES) == sorted(set(SCORES_SCHEMA.names) - {"image_id", "event_timestamp"})


def test_a_column_feast_cannot_serve_is_refused():
    with pytest.raises(TypeError, match="int16"):
        feast_type(pa.int16())  # jpeg_quality was written as int16 and declared Int32
    assert feast_type(pa.int32()) == F.Int32 and feast_type(pa.float32()) == F.Float32


def _types(frame: pd.DataFrame) -> dict:
    return {f.name: f.type for f in pa.Schema.from_pandas(frame, preserve_index=False)}


def _assert_writes(frame: pd.DataFrame, schema: pa.Schema) -> None:
    """The frame, as Dask writes it (schema inferred from pandas), has exactly ``schema``'s columns and types."""
    assert _types(frame) == {f.name: f.type for f in schema}


def test_metadata_writer_writes_its_schema():
    row = {"image_id": "a", "provider": "flickr", "source": "flickr", "creator": "x", "title": "IMG_1",
           "foreign_landing_url": "https://www.flickr.com/photos/x/1", "creator_url": None,
           "license": "by", "license_version": "2.0", "width": 640, "height": 480, "filesize": None,
           "created_on": pd.Timestamp("2020-01-01", tz="UTC"), "category": None, "watermarked": False,
           "meta_data": json.dumps({"date_taken": "2016-11-19 10:00:00", "latitude": "1.5", "longitude": "2"}),
           "tags": json.dumps(["sea"])}
    _assert_writes(with_timestamp(metadata_features(pd.DataFrame([row, {**row, "image_id": "b"}]), NOW), NOW),
                   WRITTEN["image_metadata"])


def test_domain_writer_writes_its_schema():
    metadata = pd.DataFrame({"image_id": ["a", "b"], "landing_host": ["www.flickr.com", None],
                             "landing_domain": ["flickr.com", None]}).astype("string")
    scores = pd.DataFrame({"name": pd.Series(["flickr.com"], dtype="string"), "score": [0.9], "pr_val": [1e-5],
                           "n_hosts": [10.0]})
    per_image = D.domain_features(metadata, scores.iloc[:0], scores)
    graph = pd.DataFrame({"domain": ["flickr.com"], **{c: [1.0] for c in D.LINK_AUTHORITY_COLUMNS}})
    per_image = per_image.merge(D.link_authority_table(graph), on="landing_domain", how="left")
    _assert_writes(with_timestamp(per_image, NOW), D.DOMAINS_DATASET_SCHEMA)


def test_link_writer_writes_its_schema(tmp_path):
    images = ["https://img.example.com/i/1.png", "https://img.example.com/i/2.png"]
    warc = write_demo_warc(tmp_path / "demo.warc.gz", demo_pages(images, ["https://img.example.com/page/1", None]))
    edges, _, _ = extract_file(str(warc))
    pages, _ = pages_frame(edges)
    catalog = pd.DataFrame({"image_id": ["i1", "i2", "none"], "provider": "x", "url": [*images, "https://n.org/x.jpg"],
                            "thumbnail": None, "foreign_landing_url": ["https://img.example.com/page/1", None, None]})
    feats = L.link_features_frame(catalog, edges, pages)
    assert feats["has_link_evidence"].any() and not feats["has_link_evidence"].all()
    _assert_writes(with_timestamp(feats, NOW), WRITTEN["image_links"])


def test_visual_writer_writes_its_schema():
    pixels = pd.DataFrame({"image_id": ["a", "b", "c"], "phash": pd.array([5, 7, None], dtype="Int64")})
    catalog = pixels[["image_id"]].assign(provider="p", foreign_landing_url="https://a.org/")
    _assert_writes(with_timestamp(V.visual_features_frame(catalog, pixels), NOW), WRITTEN["image_visual"])


def test_score_writer_writes_its_schema():
    features = pd.DataFrame({"image_id": ["a", "b"], "observed_popularity": [0.5, None],
                             "has_link_evidence": [True, False], "link_authority": [0.7, None],
                             "domain_authority": [None, 0.2]})
    scores = score_partition(features, None, None, "v1", NOW)
    assert pa.Table.from_pandas(scores, schema=SCORES_SCHEMA, preserve_index=False).schema.equals(SCORES_SCHEMA)
    assert _types(scores)["popularity"] == pa.float64()


@pytest.mark.parametrize("meta, schema", [(PIXELS_META, PIXELS_SCHEMA), (EXIF_META, EXIF_SCHEMA)])
def test_image_family_frames_carry_their_schema(meta, schema):
    """The image families are written with ``schema=``: their pandas frames must convert to it unchanged."""
    assert _types(meta) == {f.name: f.type for f in schema}


def test_event_time_is_the_stamped_type():
    assert _types(with_timestamp(pd.DataFrame({"x": [1]}), NOW))["event_timestamp"] == EVENT_TIME.type
