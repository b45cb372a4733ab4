"""Text features: cleaned documents without provider artefacts, embedded inside the estimator."""

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from imagerank.features.text import TextEmbedding, TextScore, clean_text, text_documents
from imagerank.models.evaluation import grouped_cv_predictions, spearman
from imagerank.models.ensemble import popularity_estimator


def test_clean_text_drops_provenance_and_markup():
    assert clean_text("File:Bhutanese ngultrum_5.jpg") == "Bhutanese ngultrum 5"
    assert clean_text("<b>Sunset</b> &amp; sea https://example.com/x") == "Sunset & sea"
    assert clean_text(None) == ""


def test_documents_join_title_description_and_tags():
    catalog = pd.DataFrame({"image_id": ["a", "b"], "title": ["Harbour", None],
                            "meta_data": ['{"description": "Boats at dawn."}', "{}"],
                            "tags": ['["sea", {"name": "boat"}]', "not json"]})
    docs = text_documents(catalog)
    assert list(docs["text"]) == ["Harbour | Boats at dawn. | sea ; boat", ""]
    assert list(docs["description_sentences"]) == [1.0, 0.0] and list(docs["tag_words"]) == [2.0, 0.0]


def test_embedding_has_a_fixed_width_even_on_tiny_inputs():
    out = TextEmbedding(n_components=6).fit_transform(pd.Series(["red car", "blue sky", None]))
    assert out.shape == (3, 6) and np.isfinite(out).all()


def words(n, seed):
    rng = np.random.default_rng(seed)
    vocab = np.array(["alpine", "lake", "sunset", "portrait", "street", "macro", "bird", "city", "night", "food"])
    good = rng.random(n) < 0.5
    docs = [" ".join(rng.choice(vocab, 4)) + (" aurora borealis" if g else " receipt scan") for g in good]
    return pd.Series(docs), good.astype(float) + rng.normal(0, 0.2, n)


def test_text_score_is_out_of_fold_on_training_rows_and_learns_words():
    with threadpool_limits(1):
        docs, y = words(300, 0)
        frame = pd.DataFrame({"text": docs, "creator": [f"c{i % 40}" for i in range(300)]})
        score = TextScore(cv=3)
        oof = score.fit_transform(frame, y)[:, 0]
        assert spearman(oof, y) > 0.6
        # the out-of-fold scores differ from the in-sample fit (no row scored by a ridge that saw it)
        assert not np.allclose(oof, score.transform(frame)[:, 0])
        noise = pd.Series(np.random.default_rng(3).permutation(y))
        assert abs(spearman(TextScore(cv=3).fit_transform(frame, noise)[:, 0], noise)) < 0.2


def test_text_lives_inside_the_cross_validated_pipeline():
    with threadpool_limits(1):
        docs, y = words(200, 1)
        frame = pd.DataFrame({"text": docs, "creator": [f"c{i % 50}" for i in range(200)], "n": np.zeros(200)})
        model = popularity_estimator(["n"], text_components=4, max_iter=20, n_estimators=10, cv=2)
        predicted = grouped_cv_predictions(model, frame, pd.Series(y), frame["creator"])
        assert spearman(predicted, y) > 0.6
        names = list(model.fit(frame, y).named_steps["features"].get_feature_names_out())
        assert "creator" not in names and names[:2] == ["n", "text_score"]
