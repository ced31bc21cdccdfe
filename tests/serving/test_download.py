"""Downloads cannot be turned against the pod's neighbourhood: with real local HTTP servers,
a redirect to another host or port is refused, a name resolving to loopback is refused unless
the tests-only opt-out is set, and link-local or metadata addresses are refused always."""

from __future__ import annotations

import http.server
import ipaddress
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modeldeploy_serving import artifact, download, errors
from tests.serving import models
from tests.serving.process import server_command, server_env

LIMIT = 1024 * 1024
BODY = b"model bytes"


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET /model -> bytes; GET /to?<url> -> 302 to <url>; GET /admin -> the secret."""

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/to":
            self.send_response(302)
            self.send_header("Location", query)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = {"/model": BODY, "/admin": b"loopback-only secret"}.get(path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, int]]:
    """Two plain HTTP servers on 127.0.0.1 (two ports: two origins)."""
    running = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler) for _ in range(2)]
    for httpd in running:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield running[0].server_address[1], running[1].server_address[1]
    for httpd in running:
        httpd.shutdown()


def fetch(uri: str, *, allow_loopback: bool = True) -> bytes:
    return artifact.fetch(uri, max_bytes=LIMIT, timeout=10, allow_loopback=allow_loopback)


def refused(uri: str, **kwargs: bool) -> str:
    with pytest.raises(errors.FetchFailed) as caught:
        fetch(uri, **kwargs)
    return str(caught.value)


def test_a_redirect_within_the_same_origin_is_followed(servers: tuple[int, int]) -> None:
    port, _ = servers
    assert fetch(f"http://127.0.0.1:{port}/to?/model") == BODY
    assert fetch(f"http://127.0.0.1:{port}/to?http://127.0.0.1:{port}/model") == BODY


@pytest.mark.parametrize(
    "target",
    [
        lambda port, other: f"http://127.0.0.1:{other}/admin",  # another port
        lambda port, other: f"http://localhost:{port}/admin",  # another host name, same address
        lambda port, other: f"https://127.0.0.1:{port}/admin",  # another scheme
        lambda port, other: "file:///etc/passwd",
        lambda port, other: "http://169.254.169.254/latest/meta-data/",
    ],
    ids=["other-port", "other-host", "other-scheme", "file", "metadata"],
)
def test_a_redirect_elsewhere_is_refused_naming_both_urls(
    servers: tuple[int, int], target: Callable[[int, int], str]
) -> None:
    port, other = servers
    start = f"http://127.0.0.1:{port}/to?{target(port, other)}"
    message = refused(start)
    assert message.startswith("download refused: ")
    assert start in message and target(port, other) in message
    assert "same scheme, host and port" in message


def test_a_name_resolving_to_loopback_is_refused_unless_opted_out(
    servers: tuple[int, int],
) -> None:
    port, _ = servers
    message = refused(f"http://localhost:{port}/model", allow_loopback=False)
    assert "download refused: localhost resolves to" in message
    assert "a loopback address" in message and "--allow-loopback-downloads" in message
    assert "127.0.0.1" in refused(f"http://127.0.0.1:{port}/model", allow_loopback=False)
    assert fetch(f"http://127.0.0.1:{port}/model", allow_loopback=True) == BODY


@pytest.mark.parametrize(
    "uri",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://0xA9FEA9FE/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://0251.0376.0251.0376/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://[fe80::1]/x",
        "http://100.100.100.200/latest/meta-data/",
    ],
)
def test_link_local_and_metadata_addresses_are_refused_even_with_the_opt_out(uri: str) -> None:
    """Refused before any packet is sent (inet_aton reads the integer and octal forms too)."""
    message = refused(uri, allow_loopback=True)
    assert "download refused: " in message
    assert "link-local" in message or "metadata" in message


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.0.0.5", True),
        ("2001:db8::1", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("0.0.0.0", False),
        ("::ffff:127.0.0.1", False),
        ("169.254.169.254", False),
        ("fd00:ec2::254", False),
    ],
)
def test_refusal_of_resolved_addresses(address: str, allowed: bool) -> None:
    assert (
        download.refusal(ipaddress.ip_address(address), allow_loopback=False) is None
    ) is allowed


def test_init_container_mode_reports_a_refused_download(
    tmp_path: Path, servers: tuple[int, int]
) -> None:
    """The real process: exit code 3 (FetchFailed) and the reason in the termination log."""
    port, _ = servers
    saved = models.train_classifier(tmp_path, name="m")
    log = tmp_path / "termination.log"
    command = server_command(None, "--model-uri", f"http://localhost:{port}/model", "--sha256",
                             saved.sha256, "--fetch-to", str(tmp_path / "out" / "m.joblib"),
                             "--termination-log", str(log))  # fmt: skip
    result = subprocess.run(command, env=server_env(), capture_output=True, timeout=60, check=False)
    assert result.returncode == 3, result.stderr.decode()
    assert "download refused: localhost resolves to" in log.read_text()
    assert not (tmp_path / "out" / "m.joblib").exists()
