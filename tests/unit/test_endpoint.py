"""KFP API URLs are read strictly, and the URL connected to is rebuilt from the checked parts, so
that every URL parser (urllib.parse, urllib3, the browser's) sees the same host in it."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from urllib3.util import parse_url

from nbconvert_kfp.script.cluster import endpoint, redaction


@pytest.mark.parametrize(("text", "url", "origin"), [
    ("https://kfp.example.com/pipeline/", "https://kfp.example.com/pipeline", ("https", "kfp.example.com", 443)),
    ("HTTP://KFP.Example.COM:8080", "http://kfp.example.com:8080", ("http", "kfp.example.com", 8080)),
    ("kfp.example.com", "https://kfp.example.com", ("https", "kfp.example.com", 443)),
    ("http://127.0.0.1:8888", "http://127.0.0.1:8888", ("http", "127.0.0.1", 8888)),
    ("http://[0:0::1]:8888/x", "http://[::1]:8888/x", ("http", "[::1]", 8888)),
    ("http://ml-pipeline.kubeflow:8888", "http://ml-pipeline.kubeflow:8888", ("http", "ml-pipeline.kubeflow", 8888)),
])
def test_a_plain_url_is_rebuilt_and_every_parser_reads_the_same_host(text, url, origin):
    parsed = endpoint.parse(text)
    assert parsed.url == url and parsed.origin == origin
    by_urllib3, by_stdlib = parse_url(parsed.url), urlsplit(parsed.url)
    host = origin[1].strip("[]")
    assert by_urllib3.host.strip("[]") == by_stdlib.hostname == host
    assert (by_urllib3.port or origin[2]) == (by_stdlib.port or origin[2]) == origin[2]
    assert endpoint.parse(parsed.url) == parsed


@pytest.mark.parametrize(("text", "fault"), [
    ("http://evil.example\\@kfp.example.com/pipeline", "backslash"),
    ("http://evil.example@kfp.example.com", "user info"),
    ("http://user:secret@kfp.example.com", "user info"),
    ("http://kfp.example.com%2F.evil.example", "percent-encoding"),
    ("http://kfp%2eexample.com", "percent-encoding"),
    ("http://kfp.example.com./", "ends with a dot"),
    ("http://kfp.example.com\t", "whitespace"),
    (" http://kfp.example.com", "whitespace"),
    ("http://kfp.example.com\x00.evil", "control"),
    ("http://kfp.ex\u0430mple.com", "non-ASCII"),
    ("http://[::1%25eth0]:80", "percent-encoding"),
    ("http://[::1\\@evil]/", "backslash"),
    ("http://[not-v6]/", "host is not"),
    ("http://[127.0.0.1]/", "not an IPv6 address"),
    ("http://2130706433/", "numeric but not a dotted IPv4"),
    ("http://0x7f.1/", "numeric but not a dotted IPv4"),
    ("http://0177.0.0.1/", "numeric but not a dotted IPv4"),
    ("http://kfp.example.com:99999", "port 99999"),
    ("http://kfp.example.com:+80", "host is not"),
    ("http://kfp.example.com?x=evil", "a query"),
    ("http://kfp.example.com#evil", "a fragment"),
    ("ftp://kfp.example.com", "scheme is 'ftp'"),
    ("http://kfp_example.com", "host is not a DNS name"),
    ("http://-kfp.example.com", "not a valid DNS name"),
    ("http://kfp.example.com/a b", "whitespace"),
    ("http://kfp.example.com/<script>", "path"),
    ("http://", "host is not"),
    ("", "empty"),
])
def test_anything_else_is_refused_naming_the_fault(text, fault):
    with pytest.raises(endpoint.EndpointError, match=fault.replace("(", r"\(").replace("'", "'")):
        endpoint.parse(text)


def test_a_scheme_can_be_required():
    with pytest.raises(endpoint.EndpointError, match="no scheme"):
        endpoint.parse("kfp.example.com", default_scheme=None)


TOKEN = "kfp/Tok+en=9f3c1a7e5b2d4c6a8e0f"


@pytest.mark.parametrize("shown", [
    TOKEN, TOKEN.upper(), TOKEN.lower(), "kfp%2FTok%2Ben%3D9f3c1a7e5b2d4c6a8e0f", "kfp%2ftok%2ben%3d9f3c",
    "a2ZwL1Rvaytlbj05ZjNjMWE3ZTViMmQ0YzZhOGUwZg", "QmVhcmVyIGtmcC9Ub2srZW49OWYzYzFhN2U1YjJkNGM2YThlMGY=",
    TOKEN[:9] + "…", "kfp/Tok+en=9f3c1a7e5b2d4c6a8e0fXYZ",
])
def test_a_token_is_masked_in_the_forms_it_is_echoed_in(shown):
    text = redaction.clean(f"\x1b[31mrefused: {shown} (try again)\x1b]0;t\x07\x9b2J\x07", [TOKEN])
    assert text.startswith("refused: ***") and text.endswith(" (try again)"), text
    assert "9f3c" not in text.lower() and "\x1b" not in text and "\x9b" not in text and "\x07" not in text


def test_text_without_a_secret_or_control_keeps_its_newlines_and_tabs():
    assert redaction.clean("step\ttrain\nkfp/ ok", [TOKEN]) == "step\ttrain\nkfp/ ok"
