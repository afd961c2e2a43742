"""A self-signed certificate for 127.0.0.1 (made with the ``openssl`` command), for TLS tests."""

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    key_pem: str


def self_signed(folder: Path) -> TlsFiles:
    """A one-day certificate and key for CN/IP 127.0.0.1 in ``folder``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the TLS tests need the openssl command (Debian package openssl)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return TlsFiles(cert, key, key.read_text())


def server_context(files: TlsFiles, *, client_cert: bool = False) -> ssl.SSLContext:
    """A server-side context presenting ``files``; ``client_cert``: demand a client certificate
    signed by the same (self-signed) certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(files.cert), str(files.key))
    if client_cert:
        context.load_verify_locations(str(files.cert))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
