#!/bin/sh
# The Valkey container's exec probes: sh probe.sh ready|alive
#
#   ready   passes on PONG only (readiness). In a group (GROUP_MODE set), a replica must also have
#           copied its primary's data since it started: its link is up, or it was up once since
#           the start (master_link_down_since_seconds is -1 until the first link, 8.1.8 and 9.1.2).
#           A new member on an empty volume, or a restarted one whose copy has not completed, is
#           kept out of the read Service and of the rollout's progress; a member that has copied
#           once and lost its primary stays ready and serves its (stale) data, as a single replica
#           does.
#           In a group that follows the other region, whose members can copy only while that
#           region is reachable, a restarted member that holds data is ready too (it serves what
#           it loaded, as before): only an empty one waits for its first copy. So region 2 stays
#           ready, and its rollouts proceed, while region 1 is away.
#           A fenced node (FENCE_FILE present, render/scripts/fence.sh) is never ready. The probe
#           lifts the fence once the node holds data it may serve and feed: it copied a primary
#           other than FENCE_HOST (link up, its AOF rewritten since: no rewrite in progress or
#           scheduled), or a person made it a primary (docs/runbooks.md#runbook-a-fenced-node). In a
#           group it first gives the node back its replica-priority, as the reloader's user.
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
#   FENCE_FILE           the fence's file on the data volume; unset without persistence
#   FENCE_HOST           the name a fenced node replicates from (with FENCE_FILE)
#   REPLICA_PRIORITY     in a group: the replica-priority a lifted fence restores
#   RELOADER_USER, RELOADER_PASSWORD_FILE
#                        in a group: the user that may CONFIG SET replica-priority
#   GROUP_MODE           set in a group member's container (leader or follower)
#   SENTINEL_NODE_USER, SENTINEL_NODE_PASSWORD_FILE
#                        in a group: the user the readiness of a replica asks INFO as (the probe
#                        user may ask INFO only since the fence: pods of an older template's ACL
#                        do not have it), already in the container for prestop.sh
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
if [ "$mode:$reply" = ready:PONG ] && [ -n "${FENCE_FILE:-}" ] && [ -f "$FENCE_FILE" ]; then
  : "${FENCE_HOST:?}"
  state="$(REDISCLI_AUTH="$(cat "$PROBE_PASSWORD_FILE")" valkey-cli --no-auth-warning --user "$PROBE_USER" \
    -h 127.0.0.1 -p "$VALKEY_PORT" "$@" INFO replication persistence 2>/dev/null | tr -d '\r' |
    awk -F: '$1 ~ /^(role|master_host|master_link_status|loading|aof_rewrite_in_progress|aof_rewrite_scheduled)$/ {
      v[$1] = $2 } END { print v["role"], v["master_host"], v["master_link_status"], v["loading"] v["aof_rewrite_in_progress"] v["aof_rewrite_scheduled"] }')"
  case "$state" in
    "slave $FENCE_HOST "*)
      echo "fenced: $(head -n 1 "$FENCE_FILE") (docs/runbooks.md#runbook-a-fenced-node)"
      exit 1
      ;;
    "master "* | "slave "*" up 000") ;;
    *)
      echo "fenced ($(head -n 1 "$FENCE_FILE")), copying: $state"
      exit 1
      ;;
  esac
  if [ -n "${GROUP_MODE:-}" ] && [ "$(REDISCLI_AUTH="$(cat "${RELOADER_PASSWORD_FILE:?}")" valkey-cli --no-auth-warning \
    --user "${RELOADER_USER:?}" -h 127.0.0.1 -p "$VALKEY_PORT" "$@" CONFIG SET replica-priority \
    "${REPLICA_PRIORITY:?}" 2>/dev/null)" != OK ]; then
    echo "fenced: holds data now, but replica-priority could not be restored"
    exit 1
  fi
  rm -f "$FENCE_FILE" || exit 1
fi
case "$mode:$reply" in
  ready:PONG) [ -z "${GROUP_MODE:-}" ] && exit 0 ;;
  alive:PONG | alive:LOADING*) exit 0 ;;
  *)
    echo "$reply"
    exit 1
    ;;
esac

: "${SENTINEL_NODE_USER:?}" "${SENTINEL_NODE_PASSWORD_FILE:?}"
replication="$(REDISCLI_AUTH="$(cat "$SENTINEL_NODE_PASSWORD_FILE")" valkey-cli --no-auth-warning \
  --user "$SENTINEL_NODE_USER" -h 127.0.0.1 -p "$VALKEY_PORT" "$@" INFO replication 2>/dev/null | tr -d '\r')"
field() {
  echo "$replication" | sed -n "s/^$1://p"
}
case "$(field role):$(field master_link_status):$(field master_link_down_since_seconds)" in
  master:*:* | slave:up:*) exit 0 ;;
  slave:*:[0-9]*) exit 0 ;;
  slave:*:-1)
    if [ "$GROUP_MODE" = follower ] && REDISCLI_AUTH="$(cat "$SENTINEL_NODE_PASSWORD_FILE")" valkey-cli \
      --no-auth-warning --user "$SENTINEL_NODE_USER" -h 127.0.0.1 -p "$VALKEY_PORT" "$@" INFO keyspace \
      2>/dev/null | grep -q '^db[0-9]*:keys=[1-9]'; then
      exit 0
    fi
    echo "a replica that has not copied its primary's data since it started"
    ;;
  *) echo "no INFO replication: ${replication:-(no reply)}" | head -n 1 ;;
esac
exit 1
