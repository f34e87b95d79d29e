"""Valid values that must be accepted (and rendered as meant), and CA bundles parsed as certificates."""

from __future__ import annotations

import base64
import re
import textwrap
import time
from typing import Any

import pulumi
import pytest
from harness import render, stack_file_config, with_overrides
from pki import make_ca, make_server_cert

from components.config.loader import parse_stack_config

REGION1 = stack_file_config("region1")
CA = REGION1["tls"]["caBundle"]


SESSIONS = "instances.sessions"


def parsed(overrides: dict[str, Any]) -> Any:
    """Region 1's stack file with ``overrides`` (by path, as ``render`` takes them), validated."""
    cfg, problems = parse_stack_config(with_overrides(REGION1, overrides), "region1")
    assert problems == [] and cfg is not None, problems
    return cfg


@pytest.mark.parametrize(
    ("fields", "read"),
    [
        ({"resources.cpu": 1}, lambda i: i.resources.cpu == "1"),
        ({"resources.cpu": 0.5}, lambda i: i.resources.cpu == "500m"),
        (
            {"resources.cpu": "1.5", "resources.cpuLimit": 2},
            lambda i: (i.resources.cpu, i.resources.cpu_limit) == ("1500m", "2"),
        ),
        ({"storage.storageClass": "fast.ssd"}, lambda i: i.storage.storage_class == "fast.ssd"),
        ({"maxmemory": 2147483648}, lambda i: i.maxmemory == 2 * 1024**3),
        ({"maxmemory": "2048Mi"}, lambda i: i.maxmemory == 2 * 1024**3),
        ({"maxmemory": "1.5Gi"}, lambda i: i.maxmemory == 3 * 1024**3 // 2),
        ({"maxmemory": "2G"}, lambda i: i.maxmemory == 2 * 10**9),
        ({"ttl": "1h30m"}, lambda i: i.ttl.total_seconds() == 5400),
        ({"ttl": "PT5M"}, lambda i: i.ttl.total_seconds() == 300),
        ({"ttl": 300}, lambda i: i.ttl.total_seconds() == 300),
        ({"port": "6380"}, lambda i: i.port == 6380),
    ],
)
def test_valid_instance_values_are_accepted(fields: dict[str, Any], read: Any) -> None:
    """``fields``: paths into the sessions instance of region 1's stack file."""
    assert read(parsed({f"{SESSIONS}.{path}": value for path, value in fields.items()}).instances["sessions"])


def test_valid_stack_values_are_accepted() -> None:
    cfg = parsed(
        {
            "tls.issuer": None,
            "tls.existingSecret": "valkey.tls",
            "deniedCommands": ["@dangerous", "sort_ro", "CONFIG|GET"],
            "monitoring": {"thresholds": {"linkDownFor": "0s"}, "labels": {"prometheus.io/team": "platform"}},
            "externalService": {"loadBalancerClass": "service.k8s.aws/nlb"},
        }
    )
    assert cfg.tls.existing_secret == "valkey.tls"
    assert cfg.denied_commands == ["@dangerous", "sort_ro", "config|get"]
    assert cfg.monitoring.thresholds.link_down_for.total_seconds() == 0


@pytest.mark.parametrize(
    "image",
    [
        "xn--bcher-kva.example/valkey/valkey:9.1.2",
        "Registry.Example.com:5000/team/valkey:8.1.8",
        "registry.example.com/team--x/valkey:8.1.8",
    ],
)
def test_registry_hosts_the_reference_grammar_allows_are_accepted(image: str) -> None:
    assert parsed({"image": image}).image == image


def test_cpu_given_as_a_number_reaches_the_pod_as_a_quantity() -> None:
    rendered = render("region1", {f"{SESSIONS}.resources.cpu": 1, f"{SESSIONS}.resources.cpuLimit": 1.5})
    resources = rendered.container("sessions", "valkey")["resources"]
    assert (resources["requests"]["cpu"], resources["limits"]["cpu"]) == ("1", "1500m")


def test_a_denied_category_reaches_the_acl_file() -> None:
    rendered = render("region1", {"deniedCommands": ["@dangerous"]})
    acl = rendered.users_acl("sessions")
    assert re.search(r"^user default on .* \+@all -@dangerous$", acl, flags=re.MULTILINE), acl


# --- CA bundles ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = make_ca(directory, "other-ca")
    key, cert = make_server_cert(directory, (ca_key, ca_cert))
    return {"ca": ca_cert.read_text(), "ca_key": ca_key.read_text(), "server": cert.read_text(), "key": key.read_text()}


def ca_bundle_problem(bundle: str) -> str:
    cfg, problems = parse_stack_config(with_overrides(REGION1, {"tls.caBundle": bundle}), "region1")
    assert cfg is None and [p.key for p in problems] == ["tls.caBundle"], problems
    return problems[0].accepted


def damaged(pem: str) -> str:
    """The certificate with bytes changed inside its DER: still base64, still shaped like PEM."""
    body = "".join(pem.strip().splitlines()[1:-1])
    der = bytearray(base64.b64decode(body))
    der[40:48] = b"\xff" * 8
    lines = textwrap.wrap(base64.b64encode(bytes(der)).decode(), 64)
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def test_a_damaged_certificate_that_looks_like_pem_is_refused() -> None:
    assert "damaged" in ca_bundle_problem(damaged(CA))


def test_a_private_key_next_to_the_certificate_is_refused(pki: dict[str, str]) -> None:
    assert "private key" in ca_bundle_problem(CA + pki["ca_key"])
    # Even relabelled: every block must be a certificate.
    relabelled = pki["ca_key"].replace("PRIVATE KEY", "DATA")
    assert "not a CERTIFICATE" in ca_bundle_problem(CA + relabelled)


def test_a_server_certificate_is_not_a_ca(pki: dict[str, str]) -> None:
    assert "not a CA certificate" in ca_bundle_problem(pki["server"])


def test_text_around_the_certificates_is_dropped_and_several_cas_are_kept(pki: dict[str, str]) -> None:
    commented = f"subject=CN = Example\n{CA}\n# the second CA\n{pki['ca']}"
    cfg = parsed({"tls.caBundle": commented})
    assert cfg.tls.ca_bundle.count("-----BEGIN CERTIFICATE-----") == 2
    assert "subject=" not in cfg.tls.ca_bundle and "#" not in cfg.tls.ca_bundle
    rendered = render("region1", {"tls.caBundle": commented})
    assert rendered.exports["caBundle"] == cfg.tls.ca_bundle


def test_a_ca_whose_name_says_private_is_accepted(pki: dict[str, str]) -> None:
    """Only a key is refused, not the word: ``openssl x509 -text`` output of a "Private Root CA"."""
    commented = f"subject=CN = Example Private Root CA\n{CA}"
    assert parsed({"tls.caBundle": commented}).tls.ca_bundle == CA.strip() + "\n"


def test_an_expired_ca_alone_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # The example CA is valid until 2036: read it as if it were 2040 (pem reads the clock with time.time).
    monkeypatch.setattr(time, "time", lambda: 2208988800.0)
    assert "expired" in ca_bundle_problem(CA)


def test_the_stack_file_bundle_is_read_unchanged() -> None:
    # Normalizing must not rewrite a bundle that is already only certificates.
    with pytest.raises(pulumi.RunError):
        render("region1", {"tls.caBundle": damaged(CA)})
    assert parsed({}).tls.ca_bundle == CA.strip() + "\n"
