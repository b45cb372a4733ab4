"""imagerank.urls: normalization of crawled URLs, hosts and registered domains."""

import pytest

from imagerank.urls import host_of, normalize_url, registered_domain, reverse_host


@pytest.mark.parametrize("url,base,expected", [
    ("HTTP://Example.COM:80/a/./b/../c#frag", None, "http://example.com/a/c"),
    ("https://a.com:443", None, "https://a.com/"),
    ("/img/x.png?a=1 2", "https://www.Foo.com/dir/page.html", "https://www.foo.com/img/x.png?a=1%202"),
    ("//cdn.x.org/y.jpg", "https://a.com/", "https://cdn.x.org/y.jpg"),
    ("../up", "http://a.com/x/y/z", "http://a.com/x/up"),
    ("?q=1", "http://a.com/p", "http://a.com/p?q=1"),
    ("http://münchen.de/straße", None, "http://xn--mnchen-3ya.de/stra%C3%9Fe"),
    ("http://1.2.3.4:8080/x", None, "http://1.2.3.4:8080/x"),
    ("http://[::1]/", None, "http://[::1]/"),
    ("http://user:pw@Ex.com/p", None, "http://ex.com/p"),
    (" http://a.com/\n\tx ", None, "http://a.com/x"),
])
def test_normalize_ok(url, base, expected):
    assert normalize_url(url, base) == (expected, None)


@pytest.mark.parametrize("url,reason", [
    ("javascript:void(0)", "unsupported_scheme"),
    ("data:image/png;base64,AAAA", "unsupported_scheme"),
    ("mailto:x@y.org", "unsupported_scheme"),
    ("ftp://a.com/x", "unsupported_scheme"),
    ("http://" + "a" * 10000 + ".com/", "url_too_long"),
    ("http://xn--zz-bad.com/", "invalid_idna"),
    ("http://a.com:99999/", "invalid_port"),
    ("http://a.com:abc/", "invalid_port"),
    ("http://localhost/", "invalid_host"),
    ("http://ex..com/", "invalid_host"),
    ("http:///nohost", "no_host"),
    ("", "empty_url"),
    (None, "empty_url"),
    ("#top", "empty_url"),
])
def test_normalize_rejects(url, reason):
    base = "http://base.org/" if url == "#top" else None
    assert normalize_url(url, base) == (None, reason)


def test_hosts_and_domains():
    assert host_of("www.flickr.com/photos/x") == "www.flickr.com"
    assert host_of("https://WWW.München.DE./") == "www.xn--mnchen-3ya.de"
    assert host_of("http://[::1]:8080/") == "::1"
    assert host_of(None) is None and host_of("") is None and host_of("http://") is None
    assert registered_domain("live.staticflickr.com") == "staticflickr.com"
    assert registered_domain("a.b.example.co.uk") == "example.co.uk"
    assert registered_domain("192.168.0.1") == "192.168.0.1"
    assert registered_domain("com") is None
    assert reverse_host("www.flickr.com") == "com.flickr.www"


# ------------------------------------------------------------------ fast paths vs the urllib reference

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from imagerank import urls as U  # noqa: E402

_HOSTS = ["a.com", "A.Com", "WWW.EX.ORG", "a.\u212aom", "a.\u017fom", "www.ex-ample.org", "Ex.com", "a.com.", "1.2.3.4", "01.2.3.4", "1.2.3", "localhost", "a..com",
          "xn--mnchen-3ya.de", "xn--zz-bad.com", "münchen.de", "[::1]", "a_b.c", "-a.com", "a.com:80", "a.com:8080",
          "a.com:0", "a.com:", "u@a.com", "", "a" * 64 + ".com"]
_SEGMENTS = ["", "a", "B", "x.html", ".", "..", "%2e", "%zz", "a;b", ";", "a;", ":", "c:d", "~u", "a b", "é", "//",
             "@", "!$&'()*+,=", "-_.", "\\", "[", "]", "|", "^", "`", "{", "\t", "\x00"]
_QUERIES = ["", "?", "?a=1", "?a=1&b=2", "?x?y", "?[1]|2", "?a b", "?é", "?%", "?;", "?a#f", "#f", "#"]
_PATHS = st.lists(st.sampled_from(_SEGMENTS), max_size=5).map("/".join)
_ABSOLUTE = st.builds(lambda s, h, sep, p, q: f"{s}{h}{sep}{p}{q}",
                      st.sampled_from(["http://", "https://", "HTTP://", "Https://", "ftp://", "//", "http:", "javascript:"]),
                      st.sampled_from(_HOSTS), st.sampled_from(["/", "/", ""]), _PATHS, st.sampled_from(_QUERIES))
_RELATIVE = st.builds(lambda lead, p, q: lead + p + q, st.sampled_from(["", "/", "//", "./", "../", "?", "#"]),
                      _PATHS, st.sampled_from(_QUERIES))
# mostly canonical pieces with the odd perturbation, so that the fast paths are taken often
_OK_SEGMENTS = ["a", "x.html", "img", "p-1_2~", "%41", "a;b", "c:d", "!$&'()*+,=", "@"]
_NEAR_PATHS = st.lists(st.one_of(st.sampled_from(_OK_SEGMENTS), st.sampled_from(_SEGMENTS)), max_size=4).map("/".join)
_NEAR_QUERIES = st.sampled_from(["", "", "?a=1", "?a=1&b=/x?y", "?[1]|2"] + _QUERIES)
_NEAR_ABSOLUTE = st.builds(lambda s, h, p, q: f"{s}{h}/{p}{q}", st.sampled_from(["http://", "https://", "HTTP://"]),
                           st.sampled_from(["a.com", "www.ex-ample.org", "1.2.3.4", "b.co.uk"] * 4 + _HOSTS),
                           _NEAR_PATHS, _NEAR_QUERIES)
_NEAR_RELATIVE = st.builds(lambda lead, p, q: lead + p + q,
                           st.sampled_from(["", "", "/", "/", "//b.org/", "?", "../", " "]), _NEAR_PATHS, _NEAR_QUERIES)
_ANY_URL = st.one_of(_ABSOLUTE, _RELATIVE, st.text(max_size=30))
_NEAR_URL = st.one_of(_NEAR_ABSOLUTE, _NEAR_RELATIVE)
_BASES = st.one_of(st.none(), st.just(""), _ABSOLUTE, st.sampled_from(
    ["http://a.com/", "https://www.a.org/dir/page.html?q=1", "http://a.com/d//e/f", "http://a.com/d;p/e;q",
     "http://[::1/", "http://a.com:8080/x/", "http://a.com/x/#f", "HTTPS://A.COM/x/y"]))


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ANY_URL, _BASES)
def test_fast_paths_equal_reference(url, base):
    assert U.normalize_url(url, base) == U._normalize_url_reference(url, base)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_NEAR_URL, st.one_of(st.none(), _NEAR_ABSOLUTE))
def test_fast_paths_equal_reference_near_canonical(url, base):
    """Mostly canonical URLs and bases (most of these take a fast path) with the odd perturbation."""
    assert U.normalize_url(url, base) == U._normalize_url_reference(url, base)


@pytest.mark.parametrize("url,base", [
    ("http://a.com/x;", None), ("http://a.com/x;", "http://b.org/"), ("x;?q=1", "http://a.com/d/p"),
    ("http://a.com/x", "http://[::1/"), ("a//b", "http://a.com/d/"), ("x", "http://a.com/d//e"),
    ("http://a.com/./x", None), ("./x", "http://a.com/d/"), ("x/..", "http://a.com/d/"), ("x/.?q", "http://a.com/"),
    ("c:d/x", "http://a.com/"), ("home.html", "http://a.com/d/p"), ("//cdn.a.com/i.png", "https://a.com/"),
    ("http://a.com" + "/x" * 1100, None), ("/x" * 1100, "http://a.com/"), ("http://a.com/?", None),
    ("http://xn--zz-bad.com/", None), ("http://a.com./", None), ("http://1.2.3.4/", "http://a.com/"),
    ("http://a.com/\x00?", None), ("x ?", "http://a.com/"), ("?", "http://a.com/p?q=1"), (";?", "http://a.com/p?q"),
    ("HTTP://A.COM", None), ("Http://a.\u212aom/", None), ("http://A.com?x=1", "https://b.org/"), ("?x=1", "http://a.com/d/p;q"),
    ("/h.html#u=1", "http://a.com/"), ("x \x00#f", "http://a.com/"), ("?#f", "http://a.com/p?q"), ("#f", None),
    ("http://a.com/x#" + "f" * 3000, None), ("javascript:x#y", None), ("a#b:c", "http://a.com/"),
])
def test_fast_path_edge_cases_equal_reference(url, base):
    assert U.normalize_url(url, base) == U._normalize_url_reference(url, base)


@pytest.mark.parametrize("url,base", [
    ("http://a.com/", None), ("https://www.ex-ample.org/d/x.html?a=1&b=[2]|3", "http://b.org/"),
    ("http://1.2.3.4/x%20y", None), ("/img/x.png?a=1", "https://www.foo.com/dir/page.html"),
    ("x.html", "https://www.foo.com/dir/page.html"), ("//cdn.x.org/y.jpg", "https://a.com/"),
])
def test_canonical_urls_skip_urllib(url, base, monkeypatch):
    """Canonical URLs and simple relative references never reach the urllib reference, and are unchanged."""
    expected = U._normalize_url_reference(url, base)

    def boom(*args):
        raise AssertionError("took the urllib path")

    monkeypatch.setattr(U, "_normalize_url_reference", boom)
    assert U.normalize_url(url, base) == expected
    if base is None:
        assert expected == (url, None)
