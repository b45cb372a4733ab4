"""What a run produced, for people (kept as the stable import path; the code lives in ``imagerank.reporting``).

``write_report(workdir) -> Path`` writes ``W/report/index.html``: one self-contained static HTML page with the
run's plots, model evaluation, coverage, rejects, timings and top/bottom images. ``explain(workdir, id)`` is the
evidence behind one image's two numbers; ``text_report(workdir)`` a plain-text summary.
"""

from imagerank.reporting import (UnknownImage, build_report, explain, format_text, latest_run, text_report,
                                 to_json, write_report)

__all__ = ["write_report", "build_report", "explain", "format_text", "to_json", "text_report", "latest_run",
           "UnknownImage"]
