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
