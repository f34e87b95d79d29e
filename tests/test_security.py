"""Security objects and settings as both stacks render them: TLS, NetworkPolicy, rotation,
least privilege, data protection."""

from __future__ import annotations

from typing import Any

from harness import Rendered, render, stack_file_config

from components.render.acl import password_hash

DR = ("sessions", "feature-flags")
LOCAL = ("api-cache", "rate-limiting")


# TLS


def test_every_instance_serves_tls_only_with_a_cert_manager_certificate(regions: tuple[Rendered, Rendered]) -> None:
    for rendered in regions:
        certificates = rendered.objects("Certificate")
        assert set(certificates) == {f"{n}-tls" for n in DR + LOCAL}
        for name in DR + LOCAL:
            assert rendered.directive(name, "port") == "0" and rendered.directive(name, "tls-port") == "6379"
            assert rendered.directive(name, "tls-replication") == "yes"
            cert = certificates[f"{name}-tls"]["spec"]
            assert cert["secretName"] == f"{name}-tls"
            assert cert["issuerRef"] == {"name": "valkey-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
            assert f"{name}.databases.svc.cluster.local" in cert["dnsNames"]
            volumes = {v["name"]: v for v in rendered.pod_spec(name)["volumes"]}
            assert volumes["tls"]["secret"]["secretName"] == f"{name}-tls"
            # probe.sh (the valkey container's probes) and reloader.sh connect over TLS, verifying the CA.
            for script_user in ("valkey", "reloader"):
                env = {e["name"]: e.get("value") for e in rendered.container(name, script_user)["env"]}
                assert (env["VALKEY_TLS"], env["VALKEY_CA_FILE"]) == ("yes", "/etc/valkey/ca-bundle.crt")
            assert "--redis.addr=rediss://127.0.0.1:6379" in rendered.container(name, "exporter")["args"]
            assert cert["ipAddresses"] == ["127.0.0.1"]


def test_certificate_names_include_the_external_endpoint(regions: tuple[Rendered, Rendered]) -> None:
    r1, _ = regions
    for name in DR:
        assert f"{name}.region1.example.com" in r1.objects("Certificate")[f"{name}-tls"]["spec"]["dnsNames"]


def test_replicas_trust_the_ca_region1_exports(regions: tuple[Rendered, Rendered]) -> None:
    r1, r2 = regions
    exported = r1.exports["caBundle"]
    assert exported.startswith("-----BEGIN CERTIFICATE-----") and "caBundle" not in r1.secret_exports
    for name in DR:
        assert exported in r2.config_files(name)["ca-bundle.crt"]
    assert r2.exports["instances"]["sessions"]["tls"] is True


def test_existing_secret_replaces_cert_manager() -> None:
    rendered = render("region1", {"tls.existingSecret": "wildcard-tls", "tls.issuer": None})
    assert rendered.objects("Certificate") == {}
    volumes = {v["name"]: v for v in rendered.pod_spec("sessions")["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "wildcard-tls"


def test_tls_can_be_switched_off() -> None:
    rendered = render("region1", {"tls": {"enabled": False}})
    assert rendered.objects("Certificate") == {}
    assert rendered.directive("sessions", "port") == "6379" and rendered.directive("sessions", "tls-port") is None
    assert rendered.exports["caBundle"] is None
    assert "tls" not in {v["name"] for v in rendered.pod_spec("sessions")["volumes"]}


# NetworkPolicy


def test_network_policy_denies_by_default_and_allows_what_is_configured(regions: tuple[Rendered, Rendered]) -> None:
    r1, r2 = regions
    for rendered in regions:
        policies = rendered.objects("NetworkPolicy")
        assert set(policies) == set(DR + LOCAL)
        for name, policy in policies.items():
            spec = policy["spec"]
            scrape_labels = rendered.pod_template(name)["metadata"]["labels"]
            assert spec["podSelector"]["matchLabels"].items() <= scrape_labels.items()
            assert spec["policyTypes"] == ["Ingress", "Egress"]
            (clients,) = [rule for rule in spec["ingress"] if "namespaceSelector" in str(rule["from"])][:1]
            assert clients["from"] == [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}, "podSelector": {}}
            ]
            # A group's Sentinels answer Sentinel-aware clients too; a following group has none.
            sentinels = "sentinel" in {c["name"] for c in rendered.pod_spec(name)["containers"]}
            assert clients["ports"] == [{"port": 6379, "protocol": "TCP"}] + (
                [{"port": 26379, "protocol": "TCP"}] if sentinels else []
            )
    # Replication: region 2's CIDR may reach region 1's DR primaries, nothing else may.
    for name in DR:
        ingress = r1.objects("NetworkPolicy")[name]["spec"]["ingress"]
        assert {
            "from": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
            "ports": [{"port": 6379, "protocol": "TCP"}],
        } in ingress
        egress = r2.objects("NetworkPolicy")[name]["spec"]["egress"]
        assert {"to": [{"ipBlock": {"cidr": "10.10.0.0/16"}}], "ports": [{"port": 6379, "protocol": "TCP"}]} in egress
    for rendered in regions:
        for name in LOCAL:
            text = repr(rendered.objects("NetworkPolicy")[name])
            assert "ipBlock" not in text


def test_network_policy_rule_lists_are_exactly_what_the_stack_files_allow(regions: tuple[Rendered, Rendered]) -> None:
    """The whole ingress and egress lists, not membership: a rule that admits everything (no
    ``from``/``to``, or a 0.0.0.0/0 block) next to the configured ones must fail this."""
    for rendered, config in zip(regions, (stack_file_config("region1"), stack_file_config("region2")), strict=True):
        port = [{"port": 6379, "protocol": "TCP"}]
        peers = [{"ipBlock": {"cidr": cidr}} for cidr in config["peerCidrs"]]
        clients = [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": c["namespace"]}}, "podSelector": {}}
            for c in config["networkPolicy"]["clients"]
        ]
        monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
        dns = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
        for name, policy in rendered.objects("NetworkPolicy").items():
            dr = config["instances"][name]["dr"]
            primary = config["role"] == "primary"
            group = config["instances"][name].get("replicas", 1) > 1
            sentinels = group and (primary or not dr)
            group_ports = port + ([{"port": 26379, "protocol": "TCP"}] if sentinels else [])
            members = [{"podSelector": {"matchLabels": rendered.statefulset(name)["spec"]["selector"]["matchLabels"]}}]
            ingress: list[dict[str, Any]] = [{"from": members, "ports": group_ports}] if group else []
            ingress.append({"from": clients, "ports": group_ports})
            if dr and primary:
                ingress.append({"from": peers, "ports": port})  # the other region replicates from it
            # The node's exporter, and where there are Sentinels, the Sentinel's.
            scraped = [{"port": 9121, "protocol": "TCP"}] + ([{"port": 9122, "protocol": "TCP"}] if sentinels else [])
            ingress.append({"from": monitoring, "ports": scraped})
            egress: list[dict[str, Any]] = [dns]
            if group:
                api = {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
                egress += [{"to": members, "ports": group_ports}, api]  # the label updater's PATCH
            if dr and not primary:
                egress.append({"to": peers, "ports": port})  # it replicates from the other region
            assert policy["spec"]["ingress"] == ingress, f"{rendered.stack}/{name}"
            assert policy["spec"]["egress"] == egress, f"{rendered.stack}/{name}"


def test_network_policy_can_be_disabled() -> None:
    assert render("region1", {"networkPolicy": {"enabled": False}}).objects("NetworkPolicy") == {}


# Least privilege


def test_applications_may_not_run_dangerous_commands(regions: tuple[Rendered, Rendered]) -> None:
    r1, _ = regions
    default = r1.acl_line("sessions", "default")
    for command in ("flushall", "flushdb", "debug", "config", "shutdown", "keys", "acl", "replicaof"):
        assert f" -{command}" in default
    relaxed = render("region1", {"deniedCommands": ["flushall"]})
    assert relaxed.acl_line("sessions", "default").endswith("+@all -flushall")


def test_admin_password_is_for_operators_only(regions: tuple[Rendered, Rendered]) -> None:
    r1, _ = regions
    admin = r1.secret_data("sessions-admin-credentials")
    assert admin["username"] == "admin"
    assert f"#{password_hash(admin['password'])}" in r1.acl_line("sessions", "admin")
    # Its hash is in the ACL file; the password itself is in no file the pod mounts.
    for content in r1.config_files("sessions").values():
        assert admin["password"] not in content


# Rotation


def rotated(stack: str, user: str, generation: int, accept_previous: bool, **kw: Any) -> Rendered:
    rotation = {user: {"generation": generation, "acceptPrevious": accept_previous}}
    return render(stack, {"passwordRotation": rotation}, **kw)


def test_client_rotation_accepts_both_passwords_then_only_the_new_one_and_rolls_nothing(region1: Rendered) -> None:
    before = region1
    during = rotated("region1", "client", 2, True)
    after = rotated("region1", "client", 2, False)
    old = before.secret_data("sessions-credentials")["password"]
    new = during.secret_data("sessions-credentials")["password"]
    assert old != new
    assert f"#{password_hash(new)} #{password_hash(old)} " in during.acl_line("sessions", "default")
    assert f"#{password_hash(old)}" not in after.acl_line("sessions", "default")
    for name in DR + LOCAL:
        assert before.checksum(name) == during.checksum(name) == after.checksum(name)


def test_replication_rotation_reaches_the_replica_without_a_restart(regions: tuple[Rendered, Rendered]) -> None:
    r1_before, r2_before = regions
    r1_during = rotated("region1", "replication", 2, True)
    r2_during = render("region2", references={"organization/valkey/region1": r1_during})
    new = r1_during.exports["replicationCredentials"]["sessions"]["password"]
    old = r1_before.exports["replicationCredentials"]["sessions"]["password"]
    assert new != old
    assert r2_during.config_files("sessions")["masterauth-password"] == new
    assert f"#{password_hash(new)} #{password_hash(old)} " in r1_during.acl_line("sessions", "replication")
    # Neither side restarts: the reloader sidecar runs ACL LOAD / CONFIG SET masterauth.
    assert r2_before.checksum("sessions") == r2_during.checksum("sessions")
    assert r1_before.checksum("sessions") == r1_during.checksum("sessions")


def test_a_setting_that_needs_a_restart_still_rolls_the_pod(region1: Rendered) -> None:
    changed = render("region1", {"instances.sessions.maxmemoryPolicy": "allkeys-lfu"})
    assert region1.checksum("sessions") != changed.checksum("sessions")


def test_reloader_sidecar_applies_acl_masterauth_and_certificates(regions: tuple[Rendered, Rendered]) -> None:
    _, r2 = regions
    reloader = r2.container("sessions", "reloader")
    assert reloader["command"] == ["sh", "/etc/valkey/reloader.sh"]
    env = {e["name"]: e["value"] for e in reloader["env"]}
    assert (env["RELOADER_USER"], env["RELOADER_PASSWORD_FILE"]) == ("reloader", "/etc/valkey/reloader-password")
    script = r2.config_files("sessions")["reloader.sh"]
    assert 'REDISCLI_AUTH="$(cat "$RELOADER_PASSWORD_FILE")"' in script
    assert "ACL LOAD" in script and "-x CONFIG SET masterauth" in script and "CONFIG SET tls-cert-file" in script
    assert r2.acl_line("sessions", "reloader").endswith("-@all +acl|load +config|set +role")


# Data protection


def test_stateful_resources_are_protected_when_configured(regions: tuple[Rendered, Rendered]) -> None:
    for rendered in regions:
        protected = {typ_name for typ_name in rendered.protected if typ_name[0].startswith("kubernetes:")}
        assert protected == {("kubernetes:core/v1:Namespace", "databases")} | {
            ("kubernetes:apps/v1:StatefulSet", n) for n in DR + LOCAL
        } | {("kubernetes:core/v1:ConfigMap", f"{n}-holds-data") for n in DR + LOCAL}
    assert render("region1", {"protect": False}).protected == set()


def test_local_instances_may_run_without_persistence() -> None:
    rendered = render("region1", {"instances.api-cache.persistence": False})
    sts = rendered.objects("StatefulSet")["api-cache"]["spec"]
    assert "volumeClaimTemplates" not in sts
    assert {"name": "data", "emptyDir": {}} in sts["template"]["spec"]["volumes"]
    assert rendered.directive("api-cache", "appendonly") == "no"
    assert "volumeClaimTemplates" in rendered.objects("StatefulSet")["sessions"]["spec"]
