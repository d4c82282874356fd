"""Fixtures of the cookie plugin's tests: the data folder, a declarations writer, and local
HTTPS sites for the browser tests.

The sites are served over HTTPS with a certificate from a throw-away local CA: the first
party on 127.0.0.1 and a "third party" on 127.0.0.2 (another registrable domain for the
browser and for the check). Chromium is told to trust the CA by its key
(``--ignore-certificate-errors-spki-list``), so the pages are a secure context and Secure,
SameSite=None and ``__Host-`` cookies behave as on a real site.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import importlib.util
import ipaddress
import os
import ssl
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from retention_core.testing import require_service

DATA = Path(__file__).parent / "data"
FIRST, THIRD = "127.0.0.1", "127.0.0.2"


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def write_decl(tmp_path: Path) -> Callable[[str], Path]:
    """Write a declarations YAML (dedented) and return its path."""

    def write(text: str, name: str = "cookies.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@dataclass
class Sites:
    """Two HTTPS hosts whose pages a test defines: ``route(host, path, body, *headers)``."""

    fp: str = ""  # https://127.0.0.1:PORT
    tp: str = ""  # https://127.0.0.2:PORT
    chromium_args: tuple[str, ...] = ()
    routes: dict[tuple[str, str], tuple[int, list[tuple[str, str]], bytes]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def route(self, host: str, path: str, body: str | bytes, *headers: tuple[str, str], status: int = 200) -> None:
        """Serve *body* at *path* on *host* (FIRST or THIRD); ``{fp}``/``{tp}`` in a str body
        and in header values become the two base URLs."""
        if isinstance(body, str):
            body = body.replace("{fp}", self.fp).replace("{tp}", self.tp).encode()
        fixed = [(k, v.replace("{fp}", self.fp).replace("{tp}", self.tp)) for k, v in headers]
        self.routes[(host, path)] = (status, fixed, body)

    def cli_args(self) -> list[str]:
        return [arg for a in self.chromium_args for arg in ("--chromium-arg", a)]


def _certificates(folder: Path) -> str:
    """A CA and a leaf for both loopback addresses; returns the CA's SPKI hash for Chromium."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "retention cookie tests CA")])

    def build(subject: x509.Name, public_key: object) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public_key)
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1)))

    ca = build(ca_name, ca_key.public_key()).add_extension(
        x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256())
    leaf = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loopback")]), key.public_key()).add_extension(
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(FIRST)),
                                     x509.IPAddress(ipaddress.ip_address(THIRD))]), critical=False,
    ).sign(ca_key, hashes.SHA256())
    pem = serialization.Encoding.PEM
    (folder / "chain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    spki = ca.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def need_browser() -> None:
    """Skip without Chromium or Playwright, except in CI (CI=true), where that is a failure."""
    from retention_cookies.browser import DEFAULT_CHROMIUM

    missing = []
    chromium = os.environ.get("RETENTION_CHROMIUM") or DEFAULT_CHROMIUM
    if not Path(chromium).exists():
        missing.append(f"Chromium at {chromium} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install 'retention[cookies]')")
    require_service(not missing, f"the browser test's {' and '.join(missing)}")


@pytest.fixture
def sites(tmp_path: Path, need_browser: None) -> Iterator[Sites]:
    """The first party on https://127.0.0.1:PORT and the third party on https://127.0.0.2:PORT."""
    spki = _certificates(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    state = Sites(chromium_args=(f"--ignore-certificate-errors-spki-list={spki}",))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            host = self.server.server_address[0]
            path = self.path.split("?", 1)[0]
            state.hits.append(f"{host}{self.path}")
            status, headers, body = state.routes.get((host, path), (404, [], b"not found"))
            self.send_response(status)
            kind = "text/html" if body.lstrip().startswith(b"<") else "application/javascript"
            if not any(k.lower() == "content-type" for k, _ in headers):
                self.send_header("Content-Type", kind)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET  # noqa: N815 - beacons

        def log_message(self, *args: object) -> None:
            pass

    servers = []
    for host in (FIRST, THIRD):
        server = http.server.ThreadingHTTPServer((host, 0), Handler)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    state.fp = f"https://{FIRST}:{servers[0].server_address[1]}"
    state.tp = f"https://{THIRD}:{servers[1].server_address[1]}"
    try:
        yield state
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
