"""Text of an image (title, description, tags) as one document, and a language-agnostic embedding of it.

Two halves:

- :func:`text_documents` is a partition function (``TEXT_META``): per catalog row, ``text`` = cleaned title,
  description and tag names joined, plus counts. Provider artefacts that would identify the provider
  rather than the picture are removed (wikimedia's ``File:`` prefix and file extensions, HTML entities and
  tags, URLs), so the words carry content, not provenance.
- :class:`TextEmbedding` is a scikit-learn transformer: character n-grams (``char_wb``, so it works for any
  language and script, and on camera file names) hashed into a fixed space (no vocabulary to store or to
  leak), TF-IDF weighted, reduced to a few dozen dimensions with TruncatedSVD. It lives *inside* the
  popularity estimator, so cross-validation fits the IDF and the SVD on training folds only.
"""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.utils.validation import check_is_fitted

from imagerank.catalog.fields import meta_object, tag_names

TEXT_COLUMN = "text"
TEXT_COUNT_COLUMNS = ["text_chars", "text_tokens", "description_sentences", "tag_words"]
TEXT_META = pd.DataFrame({
    "image_id": pd.Series(dtype="string"),
    TEXT_COLUMN: pd.Series(dtype="string"),
    **{c: pd.Series(dtype="float64") for c in TEXT_COUNT_COLUMNS},
})

_FILE_PREFIX = re.compile(r"^\s*(file|datei|fichier|archivo|image|bild):", re.IGNORECASE)
_EXTENSION = re.compile(r"\.(jpe?g|png|gif|tiff?|svg|webp)\b", re.IGNORECASE)
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_TAG = re.compile(r"<[^>]{0,200}>")
_SPACE = re.compile(r"\s+")
_SENTENCE = re.compile(r"[.!?。！？]+(\s|$)")


def clean_text(raw: object) -> str:
    """Content words only: no markup, entities, URLs, wiki file prefixes or extensions; one space between words."""
    if not isinstance(raw, str) or not raw:
        return ""
    text = html.unescape(_TAG.sub(" ", raw))
    text = _URL.sub(" ", _FILE_PREFIX.sub("", text))
    text = _EXTENSION.sub(" ", text).replace("_", " ")
    return _SPACE.sub(" ", text).strip()


def text_documents(catalog: pd.DataFrame) -> pd.DataFrame:
    """Partition function: image_id, the cleaned document (title | description | tags) and its counts."""
    titles = [clean_text(t) for t in catalog["title"]]
    descriptions = [clean_text(str(meta_object(m).get("description") or "")) for m in catalog["meta_data"]]
    tags = [[clean_text(t) for t in tag_names(raw)] for raw in catalog["tags"]]
    docs = [" | ".join(part for part in (title, desc, " ; ".join(t for t in tag if t)) if part)
            for title, desc, tag in zip(titles, descriptions, tags)]
    out = pd.DataFrame({
        "image_id": catalog["image_id"].astype("string").to_numpy(),
        TEXT_COLUMN: pd.array(docs, dtype="string"),
        "text_chars": [float(len(d)) for d in docs],
        "text_tokens": [float(len(d.split())) for d in docs],
        "description_sentences": [float(len(_SENTENCE.findall(d))) if d else 0.0 for d in descriptions],
        "tag_words": [float(sum(len(t.split()) for t in tag)) for tag in tags],
    })
    return out[list(TEXT_META.columns)].reset_index(drop=True)


def _as_documents(X) -> list[str]:
    """Accept a Series, a one-column frame or array, or a list; missing documents are empty."""
    if isinstance(X, pd.DataFrame):
        X = X.iloc[:, 0]
    values = np.asarray(X, dtype=object).ravel()
    return [v if isinstance(v, str) else "" for v in values]


class TextEmbedding(TransformerMixin, BaseEstimator):
    """Hashed character n-grams -> TF-IDF -> TruncatedSVD (``n_components`` dense columns)."""

    def __init__(self, n_components: int = 24, ngram_range: tuple[int, int] = (2, 4), n_features: int = 2 ** 18,
                 analyzer: str = "char_wb", random_state: int | None = 0):
        self.n_components = n_components
        self.ngram_range = ngram_range
        self.n_features = n_features
        self.analyzer = analyzer
        self.random_state = random_state

    def _hashing(self) -> HashingVectorizer:
        return HashingVectorizer(analyzer=self.analyzer, ngram_range=self.ngram_range, n_features=self.n_features,
                                 alternate_sign=False, norm=None, lowercase=True, dtype=np.float32)

    def fit(self, X, y=None):
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X, y=None):
        docs = _as_documents(X)
        counts = self._hashing().transform(docs)
        self.tfidf_ = TfidfTransformer(sublinear_tf=True).fit(counts)
        weighted = self.tfidf_.transform(counts)
        # SVD needs fewer components than the rank it can see; keep the output width fixed regardless.
        k = max(1, min(self.n_components, weighted.shape[0] - 1, weighted.shape[1] - 1))
        self.svd_ = TruncatedSVD(n_components=k, random_state=self.random_state, algorithm="randomized", n_iter=4)
        dense = self.svd_.fit_transform(weighted)
        self.n_features_out_ = self.n_components
        return self._pad(dense)

    def transform(self, X):
        check_is_fitted(self, ["tfidf_", "svd_"])
        counts = self._hashing().transform(_as_documents(X))
        return self._pad(self.svd_.transform(self.tfidf_.transform(counts)))

    def _pad(self, dense: np.ndarray) -> np.ndarray:
        if dense.shape[1] < self.n_components:
            dense = np.hstack([dense, np.zeros((dense.shape[0], self.n_components - dense.shape[1]))])
        return dense.astype("float64")

    def get_feature_names_out(self, input_features=None):
        return np.array([f"text_svd{i}" for i in range(self.n_components)], dtype=object)


class TextScore(TransformerMixin, BaseEstimator):
    """Supervised text feature: a ridge regression on TF-IDF weighted hashed character n-grams.

    Input: one column of documents, optionally a second column of group keys (e.g. the creator) that
    only decides the inner folds. ``fit_transform`` returns *out-of-fold* ridge predictions (grouped
    K-fold over the training rows), so the downstream ensemble learns how much to trust the text score
    from predictions on rows the ridge did not see; ``transform`` uses the ridge fitted on all rows.
    """

    def __init__(self, alpha: float = 3.0, ngram_range: tuple[int, int] = (2, 4), n_features: int = 2 ** 16,
                 analyzer: str = "char_wb", cv: int = 5, random_state: int | None = 0):
        self.alpha = alpha
        self.ngram_range = ngram_range
        self.n_features = n_features
        self.analyzer = analyzer
        self.cv = cv
        self.random_state = random_state

    def _split(self, X):
        if isinstance(X, pd.DataFrame) and X.shape[1] > 1:
            groups = X.iloc[:, 1].astype("string").fillna("").to_numpy()
            return _as_documents(X.iloc[:, 0]), groups
        return _as_documents(X), None

    def _weighted(self, docs: list[str], fit: bool):
        counts = HashingVectorizer(analyzer=self.analyzer, ngram_range=self.ngram_range, n_features=self.n_features,
                                   alternate_sign=False, norm=None, lowercase=True,
                                   dtype=np.float64).transform(docs)
        if fit:
            self.tfidf_ = TfidfTransformer(sublinear_tf=True).fit(counts)
        return self.tfidf_.transform(counts)

    def fit(self, X, y):
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X, y=None):
        from sklearn.linear_model import Ridge
        from sklearn.model_selection import GroupKFold, KFold

        if y is None:
            raise ValueError("TextScore is supervised: fit it with a target")
        docs, groups = self._split(X)
        y = np.asarray(y, dtype="float64")
        matrix = self._weighted(docs, fit=True)
        oof = np.full(len(docs), float(np.mean(y)) if len(y) else 0.0)
        if groups is not None:
            # Rows without a group key (empty string) are each their own group.
            keys = np.array([g if g else f"__row{i}" for i, g in enumerate(groups)], dtype=object)
            n_splits = min(self.cv, len(set(keys)))
            splitter = GroupKFold(n_splits=n_splits).split(matrix, y, keys) if n_splits >= 2 else []
        else:
            n_splits = min(self.cv, len(docs))
            splitter = KFold(n_splits, shuffle=True, random_state=self.random_state).split(matrix) if n_splits >= 2 else []
        for train, test in splitter:
            oof[test] = Ridge(alpha=self.alpha).fit(matrix[train], y[train]).predict(matrix[test])
        self.ridge_ = Ridge(alpha=self.alpha).fit(matrix, y)
        return oof[:, None]

    def transform(self, X):
        check_is_fitted(self, ["tfidf_", "ridge_"])
        docs, _ = self._split(X)
        return self.ridge_.predict(self._weighted(docs, fit=False))[:, None]

    def get_feature_names_out(self, input_features=None):
        return np.array(["text_score"], dtype=object)
