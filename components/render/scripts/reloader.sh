#!/bin/sh
# The reloader sidecar: sh reloader.sh
#
# Applies what Pulumi changed in the mounted Secrets without restarting Valkey: ACL LOAD for the
# users' passwords (rotation), a replica's masterauth (CONFIG SET), a TLS reload for a renewed
# certificate; the metrics exporter re-reads its password file. The watched files are compared
# every RELOADER_INTERVAL_SECONDS (the kubelet swaps a Secret volume atomically); a failed step is
# retried at the next comparison, until every step has succeeded.
#
# Parameters, from the container's environment (components/render/pod_scripts.py lists them):
#   VALKEY_PORT               the server's port on 127.0.0.1
#   VALKEY_TLS                yes: connect over TLS, verifying against VALKEY_CA_FILE, and reload the
#                             server certificate; no: plaintext
#   VALKEY_CA_FILE            the CA bundle (with VALKEY_TLS=yes only)
#   TLS_CERT_FILE             the server certificate (with VALKEY_TLS=yes only)
#   TLS_KEY_FILE              its key (with VALKEY_TLS=yes only)
#   RELOADER_USER             the ACL user that may run ACL LOAD and CONFIG SET
#   RELOADER_PASSWORD_FILE    its password, read into REDISCLI_AUTH (never into an argument)
#   ACL_FILE                  the server's ACL file
#   MASTERAUTH_FILE           a replica's masterauth, the raw password; absent on a primary
#   MIGRATING, UPSTREAM_FILE, SOURCE_LOGIN_DIR, REPLICATION_USER
#                             a group that migrates by replication (login.sh): the login set is
#                             the one for what the node replicates now (ROLE), the source's or the
#                             group's own, and the source's Secret is watched too
#   EXPORTER_RELOAD_URL       the exporter's reload endpoint; empty without the exporter
#   RELOADER_INTERVAL_SECONDS seconds between two comparisons
#
# A running loop never re-reads this file: a change to it restarts the pod (it is in the config
# checksum, components/render/files.py).

: "${VALKEY_PORT:?}" "${RELOADER_USER:?}" "${RELOADER_PASSWORD_FILE:?}" "${ACL_FILE:?}" "${MASTERAUTH_FILE:?}"
: "${RELOADER_INTERVAL_SECONDS:?}"
# shellcheck source=SCRIPTDIR/login.sh
. "$(dirname "$0")/login.sh"
case "${VALKEY_TLS:-}" in
  yes) : "${VALKEY_CA_FILE:?}" "${TLS_CERT_FILE:?}" "${TLS_KEY_FILE:?}" ;;
  no) ;;
  *)
    echo "VALKEY_TLS must be yes or no" >&2
    exit 2
    ;;
esac

cli() {
  if [ "$VALKEY_TLS" = yes ]; then
    set -- --tls --cacert "$VALKEY_CA_FILE" "$@"
  fi
  REDISCLI_AUTH="$(cat "$RELOADER_PASSWORD_FILE")" valkey-cli --no-auth-warning --user "$RELOADER_USER" \
    -h 127.0.0.1 -p "$VALKEY_PORT" "$@"
}

# Every step runs, even after one failed; the result is 0 only if all succeeded.
apply() {
  ok=1
  cli ACL LOAD | grep -qx OK || ok=0
  # After ACL LOAD, so the server already accepts the password the exporter re-reads.
  if [ -n "${EXPORTER_RELOAD_URL:-}" ]; then
    wget -q -O /dev/null "$EXPORTER_RELOAD_URL" || ok=0
  fi
  # From stdin (-x): the password is never an argument.
  if migrating; then
    # ROLE of a replica: slave, its primary's host, port, ...; of a primary: no target, the own login.
    role="$(cli ROLE | tr -d '\r')"
    case "$(echo "$role" | sed -n 1p)" in
      slave) set_login "$(echo "$role" | sed -n 2p) $(echo "$role" | sed -n 3p)" cli || ok=0 ;;
      master) set_login "" cli || ok=0 ;;
      *) ok=0 ;; # no answer: the next comparison tries again
    esac
  elif [ -s "$MASTERAUTH_FILE" ]; then
    cli -x CONFIG SET masterauth <"$MASTERAUTH_FILE" | grep -qx OK || ok=0
  fi
  if [ "$VALKEY_TLS" = yes ]; then
    cli CONFIG SET tls-cert-file "$TLS_CERT_FILE" tls-key-file "$TLS_KEY_FILE" tls-ca-cert-file "$VALKEY_CA_FILE" |
      grep -qx OK || ok=0
  fi
  [ "$ok" = 1 ]
}

set -- "$ACL_FILE" "$MASTERAUTH_FILE"
if migrating && [ -n "${SOURCE_LOGIN_DIR:-}" ]; then
  set -- "$@" "$SOURCE_LOGIN_DIR/username" "$SOURCE_LOGIN_DIR/password"
fi
if [ "$VALKEY_TLS" = yes ]; then
  set -- "$@" "$VALKEY_CA_FILE" "$TLS_CERT_FILE" "$TLS_KEY_FILE"
fi
fingerprint() {
  cat "$@" 2>/dev/null | sha256sum
}

# PID 1 ignores signals it does not handle: without the trap every pod stop would wait for the
# whole grace period; `sleep & wait` lets the trap run at once.
trap 'exit 0' TERM INT
seen="$(fingerprint "$@")"
# After the first fingerprint: a change from now on is applied (what the tests wait for).
echo "reloader: watching $# files"
while true; do
  sleep "$RELOADER_INTERVAL_SECONDS" &
  wait $!
  now="$(fingerprint "$@")"
  [ "$now" = "$seen" ] && continue
  if apply; then
    seen="$now"
    echo "reloader: applied changed files"
  else
    echo "reloader: apply failed, will retry"
  fi
done
