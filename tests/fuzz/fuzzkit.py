"""Hypothesis profiles for the fuzz suite, and a tally of the distinct hostile inputs it tried.

``ci`` (the default) is derandomized with a small, fixed number of examples per property so the whole
suite stays bounded on a 2-core CI machine; ``nightly`` (``HYPOTHESIS_PROFILE=nightly``) runs many more
random examples and keeps Hypothesis' example database so a failure found at night replays locally.
A property that is costlier than the others asks for a share of the profile's budget with
:func:`examples` instead of a fixed number, so the nightly profile scales it too.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict

from hypothesis import HealthCheck, Phase, settings

_QUIET_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                 HealthCheck.large_base_example]

# ci: no shrinking, so a failure costs no more time than a pass (the blob replays it for shrinking locally)
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_QUIET_CHECKS, print_blob=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.register_profile("nightly", max_examples=3000, deadline=None, suppress_health_check=_QUIET_CHECKS,
                          print_blob=True)
settings.register_profile("dev", max_examples=200, deadline=None, suppress_health_check=_QUIET_CHECKS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(share: float) -> int:
    """``share`` of the loaded profile's ``max_examples`` (at least 5)."""
    return max(5, int(settings.default.max_examples * share))


#: family -> digests of the distinct inputs the properties were run on (reported at the end of a run)
TRIED: dict[str, set[str]] = defaultdict(set)


def tried(family: str, value) -> None:
    """Remember one input a property was run on (by digest, so memory stays small)."""
    data = value if isinstance(value, bytes) else repr(value).encode("utf-8", "surrogatepass")
    TRIED[family].add(hashlib.blake2b(data, digest_size=12).hexdigest())



def summary(tried: dict[str, set[str]], max_examples: int) -> str:
    """The line the run ends with: distinct inputs per family and the profile's examples per property."""
    total = sum(len(v) for v in tried.values())
    per = ", ".join(f"{k} {len(v)}" for k, v in sorted(tried.items()))
    return f"fuzz: {total} distinct hostile inputs tried ({per}); profile {max_examples} examples/property"
