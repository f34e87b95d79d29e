"""PEM bundles of CA certificates, parsed as certificates (not matched as text).

A bundle is exported as a non-secret stack output and mounted into every pod, so anything but public
CA certificates must never pass: a private key next to the certificate, a damaged block that still
looks like PEM, a server certificate instead of its CA. Each block is decoded and loaded by OpenSSL
(Python's ``ssl``); the value kept is the certificates alone, re-encoded, so text around them (the
comments ``openssl x509 -text`` writes) never reaches a pod or an output.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
import time
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

MAX_BUNDLE_CHARS = 1024 * 1024
_BLOCK = re.compile(r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----(?P<body>.*?)-----END (?P<end>[A-Z0-9 ]+)-----", re.DOTALL)
ACCEPTED = "one or more PEM CA certificates (-----BEGIN CERTIFICATE----- ...) and nothing secret"


def _refuse(reason: str) -> PydanticCustomError:
    return PydanticCustomError("pem", f"expected {ACCEPTED}; {reason}")


def ca_certificates(value: str) -> list[bytes]:
    """DER of each CA certificate in ``value``; raises a pydantic error naming what is wrong."""
    if len(value) > MAX_BUNDLE_CHARS:
        raise _refuse(f"this one has more than {MAX_BUNDLE_CHARS} characters")
    if "PRIVATE KEY" in value:  # every PEM key label: PRIVATE KEY, RSA/EC/ENCRYPTED PRIVATE KEY
        raise _refuse("this one holds a private key: never put a key in caBundle, it is exported and mounted")
    blocks = list(_BLOCK.finditer(value))
    markers = value.count("-----BEGIN ") + value.count("-----END ")
    if not blocks or markers != 2 * len(blocks):
        raise _refuse("no complete -----BEGIN/-----END block found" if not blocks else "a block is not closed")
    certificates = []
    for number, block in enumerate(blocks, start=1):
        if block["label"] != "CERTIFICATE" or block["end"] != "CERTIFICATE":
            raise _refuse(f"block {number} is a {block['label']}, not a CERTIFICATE")
        try:
            der = base64.b64decode("".join(block["body"].split()), validate=True)
        except (binascii.Error, ValueError):
            raise _refuse(f"certificate {number} is not valid base64") from None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cadata=der)
        except ssl.SSLError:
            raise _refuse(f"certificate {number} is damaged (OpenSSL cannot read it)") from None
        loaded = context.get_ca_certs()
        if not loaded:
            raise _refuse(f"certificate {number} is not a CA certificate (no basicConstraints CA:TRUE)")
        not_after = loaded[0]["notAfter"]
        assert isinstance(not_after, str)  # OpenSSL's "Nov 23 01:10:44 2036 GMT"
        certificates.append((der, ssl.cert_time_to_seconds(not_after)))
    if all(not_after < time.time() for _, not_after in certificates):
        raise _refuse("every certificate in it has expired")
    return [der for der, _ in certificates]


def _pem_bundle(value: str) -> str:
    return "".join(ssl.DER_cert_to_PEM_cert(der) for der in ca_certificates(value))


PemBundle = Annotated[str, AfterValidator(_pem_bundle)]
"""CA certificates only, each parsed by OpenSSL; normalized to the bare PEM blocks."""
