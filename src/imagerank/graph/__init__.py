"""Web graph from crawls: link extraction (``warc``), node ids and graphs (``build``), PageRank (``pagerank``)."""
