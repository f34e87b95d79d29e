#!/bin/sh
# The Valkey container's exec probes: sh probe.sh ready|alive
#
#   ready   passes on PONG only (readiness)
#   alive   passes on PONG or a reply starting LOADING (startup, liveness): a server loading its
#           dataset is alive but not ready, and killing it would restart the load from the beginning.
#
# valkey-cli exits 0 on an error reply (NOAUTH, LOADING...), so the verdict is the reply itself;
# a failing probe prints the reply, which the kubelet shows in the pod's events.
#
# Parameters, from the container's environment (components/render/pod_scripts.py lists them):
#   VALKEY_PORT          the server's port on 127.0.0.1
#   VALKEY_TLS           yes: connect over TLS, verifying against VALKEY_CA_FILE; no: plaintext
#   VALKEY_CA_FILE       the CA bundle (with VALKEY_TLS=yes only)
#   PROBE_USER           the ACL user that may PING
#   PROBE_PASSWORD_FILE  its password, read at each run into REDISCLI_AUTH (never into an argument,
#                        where /proc/<pid>/cmdline would show it)
#
# The kubelet reads this file at each probe: a change reaches running pods without a restart, once
# the kubelet has refreshed the Secret volume. Keep it working with the environment of pods that
# still run the previous pod template.

mode="${1:-}"
case "$mode" in
  ready | alive) ;;
  *)
    echo "usage: sh probe.sh ready|alive" >&2
    exit 2
    ;;
esac
: "${VALKEY_PORT:?}" "${PROBE_USER:?}" "${PROBE_PASSWORD_FILE:?}"
case "${VALKEY_TLS:-}" in
  yes) set -- --tls --cacert "${VALKEY_CA_FILE:?}" ;;
  no) set -- ;;
  *)
    echo "VALKEY_TLS must be yes or no" >&2
    exit 2
    ;;
esac

reply="$(REDISCLI_AUTH="$(cat "$PROBE_PASSWORD_FILE")" valkey-cli --no-auth-warning --user "$PROBE_USER" \
  -h 127.0.0.1 -p "$VALKEY_PORT" "$@" ping 2>/dev/null)"
case "$mode:$reply" in
  ready:PONG | alive:PONG | alive:LOADING*) exit 0 ;;
esac
echo "$reply"
exit 1
