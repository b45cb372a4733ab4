"""What a run produced, for people: the HTML run report, per-image explanations, a short text summary.

- :func:`write_report` / :func:`build_report`: ``W/report/index.html``, one self-contained static file;
- :func:`explain` / :func:`format_text`: ``imagerank explain ID``;
- :func:`text_report`: the plain-text summary ``imagerank report --text`` prints.
"""

from imagerank.reporting.build import build_report, write_report
from imagerank.reporting.data import latest_run
from imagerank.reporting.explain import UnknownImage, explain, format_text, to_json
from imagerank.reporting.text import text_report

__all__ = ["build_report", "write_report", "latest_run", "explain", "format_text", "to_json", "text_report",
           "UnknownImage"]
