"""Link extraction records/s vs bare fastwarc iteration over the same file, same run.

    python -m benchmarks.bench_extract [--quick] [FILE]

Default file: the real Common Crawl excerpt in ../shared/fixtures (16 HTML pages), repeated into a larger
temporary WARC (gzip per record) so the timing is not dominated by start-up. Reference: fastwarc iterating the
same records and reading every payload (no HTML parsing). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from fastwarc.warc import ArchiveIterator, WarcRecordType

from imagerank.graph.warc import extract_file

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "warc" / "cc_main_2020_34_excerpt.warc.gz"


def bare_fastwarc(path) -> int:
    n = 0
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response | WarcRecordType.metadata,
                                   parse_http=True):
            rec.reader.read()
            n += 1
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of each side (the median is reported)")
    ap.add_argument("file", nargs="?", default=str(FIXTURE))
    args = ap.parse_args(argv)
    copies = 5 if args.quick else 40
    repeat = args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "bench.warc.gz"
        data = Path(args.file).read_bytes()
        big.write_bytes(data * copies)  # concatenated gzip members are a valid WARC
        t_ref, records = [], 0
        t_ext, cpu_ref, cpu_ext = [], [], []
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            records = bare_fastwarc(big)
            t_ref.append(time.perf_counter() - t0)
            cpu_ref.append(time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            edges, rejects, counts = extract_file(str(big))
            t_ext.append(time.perf_counter() - t0)
            cpu_ext.append(time.process_time() - c0)
    c = dict(zip(counts.counter, counts["count"]))
    ref, ext = statistics.median(t_ref), statistics.median(t_ext)
    pages = int(c.get("pages_html", 0))
    print(f"file: {args.file} x{copies} ({len(data) * copies / 1e6:.1f} MB, {records} response+metadata records,"
          f" {pages} HTML pages, {len(edges):,} edges)")
    print(f"{'run':28} {'median s':>9} {'records/s':>11} {'pages/s':>9} {'edges/s':>9}")
    print(f"{'bare fastwarc iteration':28} {ref:>9.3f} {records / ref:>11,.0f} {pages / ref:>9,.0f} {'':>9}")
    print(f"{'imagerank extract_file':28} {ext:>9.3f} {records / ext:>11,.0f} {pages / ext:>9,.0f}"
          f" {len(edges) / ext:>9,.0f}")
    load = [round(x, 2) for x in os.getloadavg()]
    cref, cext = statistics.median(cpu_ref), statistics.median(cpu_ext)
    print(f"CPU seconds (less sensitive to other jobs): bare {cref:.3f}, extract {cext:.3f}"
          f" ({records / cext:,.0f} records/s of CPU)")
    print(f"ratio extract / bare: {ext / ref:.1f}x  (medians of {repeat}; load average {load}, {os.cpu_count()} CPUs)")
    figures = {"benchmark": "extract", "quick": args.quick, "records": records, "pages": pages,
               "edges": int(len(edges)), "bare_fastwarc_s": round(ref, 4), "extract_s": round(ext, 4),
               "bare_records_per_s": round(records / ref), "extract_records_per_s": round(records / ext),
               "extract_pages_per_s": round(pages / ext), "edges_per_s": round(len(edges) / ext),
               "ratio_extract_to_bare": round(ext / ref, 2), "bare_cpu_s": round(cref, 4), "extract_cpu_s": round(cext, 4),
               "extract_records_per_cpu_s": round(records / cext), "repeats": repeat, "load_average": load}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
