"""Throwaway certificate authorities and server certificates, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """(key, certificate) of a self-signed CA (openssl's v3_ca: basicConstraints CA:TRUE)."""
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
            "-out", str(cert), "-days", "2", "-subj", f"/CN={name}")  # fmt: skip
    return key, cert


def make_server_cert(directory: Path, ca: tuple[Path, Path], name: str = "tls") -> tuple[Path, Path]:
    """(key, certificate) for localhost and 127.0.0.1, signed by ``ca``; not a CA itself."""
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    ext = directory / f"{name}-san.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
            "-out", str(csr), "-subj", "/CN=localhost")  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return key, cert


def make_server_pki(directory: Path, ca_name: str) -> tuple[Path, Path, Path]:
    """(CA certificate, server key, server certificate) of a new CA and a server it signed."""
    ca = make_ca(directory, ca_name)
    key, cert = make_server_cert(directory, ca)
    return ca[1], key, cert
