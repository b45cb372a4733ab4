"""The run's settings and their defaults, each defined once: the CLI, the pipelines and the library
functions import them from here instead of repeating a literal.

- :func:`event_time`: the one time a run stamps on every row it writes (Feast's event time), and from
  which ages are measured; set once per run and passed to every stage.
- :class:`ImageLimits`: bounds that protect a run from hostile or broken image files.
- :data:`STANDARDIZATION_PERCENTILE`: the ``r`` of Openverse's popularity standardization.
- :class:`PageRankSettings` / :data:`PAGERANK`: damping, tolerance and iteration cap of every PageRank
  (page, host and domain link graphs, VisualRank).
- :data:`RETRAIN_POLICIES`: when a run trains new models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Openverse's percentile ``r`` of the popularity standardization (``p(x) = x / (x + C)``).
STANDARDIZATION_PERCENTILE = 0.85

#: always: train new models; never: reuse the last version; auto: train when the rows they learn from changed.
RETRAIN_POLICIES = ("always", "never", "auto")
DEFAULT_RETRAIN = "auto"


def event_time(moment: Any = None) -> pd.Timestamp:
    """The run's event time: ``moment`` (default: now) in UTC, to the whole second (run ids and Feast's
    incremental materialization compare it as text and as a time)."""
    import pandas as pd  # here, not at the top: the CLI imports this module before it needs pandas

    stamp = pd.Timestamp.now(tz="UTC") if moment is None else pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor("s")


@dataclass(frozen=True)
class PageRankSettings:
    """Power iteration: ``damping`` (probability of following a link), L1 ``tol`` and ``max_iter``."""

    damping: float = 0.85
    tol: float = 1e-10
    max_iter: int = 200

    def __post_init__(self):
        if not 0 < self.damping < 1:
            raise ValueError(f"PageRank damping must lie strictly between 0 and 1, not {self.damping!r}")
        if not self.tol > 0 or not self.max_iter > 0:
            raise ValueError(f"PageRank tol and max_iter must be positive, not {self.tol!r}, {self.max_iter!r}")


PAGERANK = PageRankSettings()


@dataclass(frozen=True)
class ImageLimits:
    """Bounds that protect a run from hostile or broken files."""

    max_bytes: int = 50 * 1024 * 1024      # larger files are refused (``too_large``) without reading on
    max_pixels: int = 100_000_000          # header width * height above this is refused before decoding
    timeout_s: float = 20.0                # per-image budget, checked between fetch / open / EXIF / decode
    allow_remote: bool = False             # allow http(s)/ftp templates
    fetch_bytes: int = 64 * 1024 * 1024    # listed bytes one task fetches in one concurrent call

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "ImageLimits":
        """Limits from keyword values; None keeps the default, an unknown name is an error."""
        unknown = set(kwargs) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown image limits {sorted(unknown)}; known: {sorted(f.name for f in fields(cls))}")
        return cls(**{k: v for k, v in kwargs.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)

    def problems(self) -> list[str]:
        """What is out of range (a run refuses to start on any; a zero budget is for tests only)."""
        return [f"image limit {name} must be positive, not {getattr(self, name)!r}"
                for name in ("max_bytes", "max_pixels", "timeout_s", "fetch_bytes") if not getattr(self, name) > 0]
