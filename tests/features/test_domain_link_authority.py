"""The landing domain's link authority (W/graph/domains/ from --linkgraph) joined to the real sample's images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imagerank.features.domains import LINK_AUTHORITY_COLUMNS
from imagerank.features.registry import joined_features, model_feature_columns
from imagerank.popularity import StandardizationConfig
from imagerank.urls import host_of, registered_domain
from pipelines.features import run_domain_features, run_metadata_features, run_popularity_labels
from pipelines.graph import run_linkgraph
from pipelines.ingest import run_ingest

NOW = pd.Timestamp("2024-06-01T00:00:00Z")


@pytest.mark.slow
def test_link_authority_joins_images_by_landing_domain_never_the_cdn(tmp_path, dask_client, sample_catalog):
    run_ingest(dask_client, [str(sample_catalog)], tmp_path)
    run_metadata_features(dask_client, tmp_path, NOW)
    run_popularity_labels(dask_client, tmp_path, StandardizationConfig(), NOW)
    # the image CDN (staticflickr.com) is the best-linked domain here: a join on the image URL would show it
    edges = tmp_path / "edges.csv"
    edges.write_text("source,target,count\n"
                     "a.example.org,live.staticflickr.com,9\nb.example.net,farm5.staticflickr.com,9\n"
                     "c.example.com,staticflickr.com,9\na.example.org,www.flickr.com,1\n"
                     "b.example.net,commons.wikimedia.org,1\nc.example.com,commons.wikimedia.org,1\n")
    run_linkgraph(dask_client, tmp_path, [str(edges)])
    result = run_domain_features(dask_client, tmp_path, [], NOW)

    catalog = pd.read_parquet(tmp_path / "catalog", columns=["image_id", "foreign_landing_url", "url"])
    features = pd.read_parquet(tmp_path / "features" / "domains").set_index("image_id")
    graph = pd.read_parquet(tmp_path / "graph" / "domains").set_index("domain")
    assert len(features) == len(catalog) and features.index.is_unique  # one row per image
    landing = catalog.set_index("image_id")["foreign_landing_url"].map(lambda u: registered_domain(host_of(u)))
    expected = landing.map(graph["pagerank"]).reindex(features.index)
    got = features["domain_link_pagerank"]
    assert np.allclose(got.to_numpy(float), expected.to_numpy(float), equal_nan=True)
    assert np.allclose(features["domain_link_in_domains"].to_numpy(float),
                       landing.map(graph["in_domains"]).reindex(features.index).to_numpy(float), equal_nan=True)
    flickr = landing[landing == "flickr.com"].index
    assert len(flickr) > 500
    assert (features.loc[flickr, "domain_link_pagerank"] == graph.at["flickr.com", "pagerank"]).all()
    assert graph.at["staticflickr.com", "pagerank"] > graph.at["flickr.com", "pagerank"]
    assert (features.loc[flickr, "domain_link_in_domains"] == 1).all()  # flickr.com, not its CDN's 3
    wikimedia = landing[landing == "wikimedia.org"].index
    assert len(wikimedia) and (features.loc[wikimedia, "domain_link_in_domains"] == 2).all()
    assert result["images_with_link_authority"] == int(expected.notna().sum()) == len(flickr) + len(wikimedia)

    # the models find the new columns through the feature registry
    columns = model_feature_columns(joined_features(tmp_path))
    assert set(LINK_AUTHORITY_COLUMNS.values()) <= set(columns)


def test_without_a_link_graph_the_columns_exist_and_are_empty(tmp_path, dask_client):
    import dask.dataframe as dd

    from imagerank.features.domains import with_link_authority

    per_image = dd.from_pandas(pd.DataFrame({"image_id": ["a", "b"], "landing_domain": ["flickr.com", None]}),
                               npartitions=1)
    out = with_link_authority(per_image, None).compute()
    assert set(LINK_AUTHORITY_COLUMNS.values()) <= set(out.columns)
    assert out[list(LINK_AUTHORITY_COLUMNS.values())].isna().all().all()
