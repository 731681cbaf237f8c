"""Downloads: https only, a cache file name the tool chooses and keeps in the cache, and the
published sha256 checked after download and on every cache hit.

A fake opener serves bytes (no network); a real `http.server` on 127.0.0.1 shows that
plain http is refused before any request and that a redirect to http is not followed.
"""

import hashlib
import http.server
import io
import os
import threading
import urllib.request

import pytest

from converter import checkpoint as ckpt

pytestmark = pytest.mark.backend_independent

URL = "https://example.org/releases/download/v1/swin_tiny.pth"
DATA = b"checkpoint bytes " * 1000
DIGEST = hashlib.sha256(DATA).hexdigest()
OTHER = hashlib.sha256(b"other").hexdigest()


class FakeOpener:
    """Serves `data` for every URL and records the URLs asked for."""

    def __init__(self, data=DATA, fail_after=None):
        self.data, self.fail_after, self.urls = data, fail_after, []

    def open(self, url, timeout=None):
        self.urls.append(url)
        if self.fail_after is None:
            return io.BytesIO(self.data)
        return _Dropping(self.data[:self.fail_after])


class _Dropping(io.BytesIO):
    def read(self, size=-1):
        block = super().read(size)
        if not block:
            raise ConnectionResetError("connection reset by peer")
        return block


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """An empty cache root under tmp_path/root; no real network call may happen."""
    root = tmp_path / "root"
    monkeypatch.setenv("VIDEOSWIN_CACHE", str(root))

    def no_network(*args, **kwargs):
        raise AssertionError("a network request was made")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", no_network)
    return root / "checkpoints"


@pytest.fixture()
def opener(monkeypatch):
    fake = FakeOpener()
    monkeypatch.setattr(ckpt, "_opener", lambda: fake)
    return fake


def _files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def quiet(*_):
    pass


@pytest.mark.parametrize("url", [
    "http://example.org/swin.pth", "file:///etc/passwd", "ftp://example.org/swin.pth",
    "HTTP://example.org/swin.pth", "https:///no-host.pth", "example.org/swin.pth",
    "/tmp/swin.pth"])
def test_only_https_urls_are_fetched(cache, opener, url):
    with pytest.raises(ckpt.CheckpointError, match="only https:// URLs") as err:
        ckpt.fetch(url, log=quiet)
    assert repr(url) in str(err.value) and "--checkpoint PATH" in str(err.value)
    assert opener.urls == [] and _files(cache) == []


def test_file_url_to_an_existing_file_is_not_read(cache, opener, tmp_path):
    secret = tmp_path / "secret.pth"
    secret.write_bytes(DATA)
    with pytest.raises(ckpt.CheckpointError, match="only https://"):
        ckpt.fetch(secret.as_uri(), log=quiet)
    assert opener.urls == [] and _files(cache) == []


def test_download_is_cached_and_reused(cache, opener):
    logged = []
    path = ckpt.fetch(URL, "swin_tiny.pth", sha256=DIGEST, log=logged.append)
    assert path == os.path.join(str(cache), "swin_tiny.pth")
    assert open(path, "rb").read() == DATA and opener.urls == [URL]
    assert _files(cache) == ["swin_tiny.pth"]          # no temporary file left
    again = ckpt.fetch(URL, "swin_tiny.pth", sha256=DIGEST.upper(), log=logged.append)
    assert again == path and opener.urls == [URL]      # the cache hit made no request
    assert "sha256 verified" in logged[-1]


def test_without_a_published_hash_the_cache_is_reused(cache, opener):
    path = ckpt.fetch(URL, log=quiet)
    assert ckpt.fetch(URL, log=quiet) == path and opener.urls == [URL]


@pytest.mark.parametrize("filename", ["../../evil.pth", "/etc/evil.pth", "a/b.pth",
                                      "..", "a\\b.pth"])
def test_config_filename_that_is_not_plain_is_ignored(cache, opener, tmp_path, filename):
    path = ckpt.fetch(URL, filename, log=quiet)
    assert path == os.path.join(str(cache), "swin_tiny.pth")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["swin_tiny.pth"]


@pytest.mark.parametrize("url,filename,name", [
    (URL, None, "swin_tiny.pth"),
    (URL, "mine.pth", "mine.pth"),
    (URL, "../x.pth", "swin_tiny.pth"),
    ("https://h/a/..%2F..%2Fetc%2Fpasswd", None, "_._etc_passwd"),
    ("https://h/a/%2e%2e", None, "checkpoint.pth"),
    ("https://h/dl/", None, "checkpoint.pth"),
    ("https://h/dl/swin b (1).pth?token=abc#frag", None, "swin_b_1_.pth"),
    ("https://h/dl/.hidden..pth", None, "hidden.pth"),
    (URL, "we ird$name.pth", "we_ird_name.pth"),
])
def test_cached_name_is_plain_and_sanitised(url, filename, name):
    assert ckpt.cached_name(url, filename) == name


def test_a_symlink_in_the_cache_cannot_lead_outside(cache, opener, tmp_path):
    cache.mkdir(parents=True)
    outside = tmp_path / "outside.pth"
    os.symlink(outside, cache / "swin_tiny.pth")
    with pytest.raises(ckpt.CheckpointError, match="outside"):
        ckpt.fetch(URL, log=quiet)
    assert not outside.exists() and opener.urls == []


def test_a_download_with_the_wrong_hash_is_deleted(cache, opener):
    with pytest.raises(ckpt.CheckpointError, match="published sha256") as err:
        ckpt.fetch(URL, sha256=OTHER, log=quiet)
    message = str(err.value)
    assert URL in message and OTHER in message and DIGEST in message
    assert _files(cache) == []


def test_a_damaged_cached_copy_is_deleted_and_downloaded_again(cache, opener):
    path = ckpt.fetch(URL, sha256=DIGEST, log=quiet)
    with open(path, "r+b") as handle:
        handle.seek(100)
        handle.write(b"XX")
    damaged = hashlib.sha256(open(path, "rb").read()).hexdigest()
    with pytest.raises(ckpt.CheckpointError, match="cached copy") as err:
        ckpt.fetch(URL, sha256=DIGEST, log=quiet)
    message = str(err.value)
    assert URL in message and DIGEST in message and damaged in message
    assert not os.path.exists(path) and opener.urls == [URL]
    assert open(ckpt.fetch(URL, sha256=DIGEST, log=quiet), "rb").read() == DATA
    assert opener.urls == [URL, URL]


def test_a_malformed_published_hash_is_refused_before_downloading(cache, opener):
    with pytest.raises(ckpt.CheckpointError, match="not a 64-digit"):
        ckpt.fetch(URL, sha256="b0f5c8c6", log=quiet)
    assert opener.urls == []


def test_an_interrupted_download_leaves_nothing(cache, monkeypatch):
    fake = FakeOpener(fail_after=5000)
    monkeypatch.setattr(ckpt, "_opener", lambda: fake)
    with pytest.raises(ckpt.CheckpointError, match="--checkpoint PATH") as err:
        ckpt.fetch(URL, sha256=DIGEST, log=quiet)
    assert "ConnectionResetError" in str(err.value) and URL in str(err.value)
    assert _files(cache) == []


def test_offline_https_says_to_pass_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOSWIN_CACHE", str(tmp_path))
    with pytest.raises(ckpt.CheckpointError, match="offline.*--checkpoint PATH"):
        ckpt.fetch("https://127.0.0.1:9/swin.pth", timeout=2, log=quiet)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_matches_published():
    assert ckpt.matches_published("unused", None) is None
    assert ckpt.matches_published("unused", "", digest=DIGEST) is None
    assert ckpt.matches_published("unused", DIGEST.upper(), digest=DIGEST) is True
    assert ckpt.matches_published("unused", OTHER, digest=DIGEST) is False


def test_matches_published_hashes_the_file(tmp_path):
    path = tmp_path / "c.pth"
    path.write_bytes(DATA)
    assert ckpt.matches_published(str(path), DIGEST) is True
    assert ckpt.matches_published(str(path), OTHER) is False


# -- a real server on the loopback ----------------------------------------------------------

@pytest.fixture()
def server():
    """A loopback HTTP server serving DATA at /swin.pth, /moved redirecting to it over
    plain http; `requests` lists the paths asked for."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{port}/swin.pth")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            self.wfile.write(DATA)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_plain_http_is_refused_before_any_request(tmp_path, monkeypatch, server):
    base, requests = server
    monkeypatch.setenv("VIDEOSWIN_CACHE", str(tmp_path))
    # The server works: a plain urllib request reaches it.
    assert urllib.request.urlopen(f"{base}/swin.pth", timeout=5).read() == DATA
    assert requests == ["/swin.pth"]
    with pytest.raises(ckpt.CheckpointError, match="only https://"):
        ckpt.fetch(f"{base}/swin.pth", sha256=DIGEST, timeout=5, log=quiet)
    assert requests == ["/swin.pth"]                       # fetch asked nothing
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_a_redirect_to_plain_http_is_not_followed(server):
    base, requests = server
    # fetch's opener, pointed at the loopback server (fetch itself would refuse http://).
    with pytest.raises(ckpt.CheckpointError, match="not https://, so it was not followed"):
        ckpt._opener().open(f"{base}/moved", timeout=5)
    assert requests == ["/moved"]


def test_a_redirect_to_https_is_followed():
    handler = next(h for h in ckpt._opener().handlers
                   if isinstance(h, urllib.request.HTTPRedirectHandler))
    request = urllib.request.Request("https://example.org/a")
    followed = handler.redirect_request(request, None, 302, "Found", {},
                                        "https://cdn.example.org/b")
    assert followed.full_url == "https://cdn.example.org/b"
