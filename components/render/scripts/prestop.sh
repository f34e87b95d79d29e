#!/bin/sh
# The Valkey container's preStop hook in a group: sh prestop.sh
#
# A rollout, a node drain or a pod delete stops the primary; the kubelet runs this first. It hands
# the primary over to a replica of the group so that nothing acknowledged is lost and the other
# region resumes with a partial resync, measured on Valkey 8.1.8 and 9.1.2 (tests/test_group_drills.py):
#
#   1. CLIENT PAUSE WRITE: writes wait, reads go on;
#   2. wait until every replica of this group has acknowledged everything (its offset in INFO
#      equals master_repl_offset; replicas acknowledge once a second);
#   3. SENTINEL FAILOVER on a Sentinel, which promotes the best replica (all are in sync now);
#   4. once a majority of Sentinels name the new primary, follow it (REPLICAOF) while still
#      paused, and close the applications' connections, so they reconnect to the new primary;
#   5. CLIENT UNPAUSE (also on every early exit).
#
# Sentinel alone cannot do this on 8.1 (a plain SENTINEL FAILOVER leaves the old primary writable
# for seconds and loses those writes); 9.1's SENTINEL FAILOVER ... COORDINATED does the same
# steps, but one path for both versions keeps a mixed group (an upgrade) behaving alike.
#
# A replica, or a primary without a replica in the group, just stops: Valkey's own shutdown then
# waits for lagging replicas (shutdown-timeout) and the Sentinels fail over after down-after.
# When a step fails or times out, it unpauses and returns: the kubelet's SIGTERM follows.
#
# Parameters, besides group.sh's, from the container's environment:
#   SENTINEL_NODE_USER            the nodes' Sentinel user (INFO, CLIENT PAUSE/KILL, SLAVEOF)
#   SENTINEL_NODE_PASSWORD_FILE   its password
#   HANDOVER_TIMEOUT_SECONDS      how long the replicas may take to catch up, and the Sentinels
#                                 to agree on the new primary, each

: "${SENTINEL_NODE_USER:?}" "${SENTINEL_NODE_PASSWORD_FILE:?}" "${HANDOVER_TIMEOUT_SECONDS:?}"
# shellcheck source=SCRIPTDIR/group.sh
. "$(dirname "$0")/group.sh"

node() {
  ask 127.0.0.1 "$VALKEY_PORT" "$SENTINEL_NODE_USER" "$SENTINEL_NODE_PASSWORD_FILE" "$@"
}

replication() {
  node INFO replication | tr -d '\r'
}

# This group's replicas (they announce their pod names) that are online, one INFO line each; a
# replica still copying the dataset could not take over and is not waited for.
group_replicas() {
  grep '^slave[0-9]*:' | grep "ip=[^,]*\.$GROUP_DOMAIN," | grep "state=online,"
}

now() {
  date +%s
}

info="$(replication)"
[ "$(echo "$info" | sed -n 's/^role://p')" = master ] || exit 0
if [ -z "$(echo "$info" | group_replicas)" ]; then
  log "prestop: no replica in the group to hand the primary over to"
  exit 0
fi

# Longer than the whole hook can take: once a failover is asked for, only the handover or the
# server's stop (SIGTERM) may end the pause.
pause_ms=$((6 * HANDOVER_TIMEOUT_SECONDS * 1000))
node CLIENT PAUSE "$pause_ms" WRITE | grep -qx OK || {
  log "prestop: CLIENT PAUSE refused"
  exit 0
}
trap 'node CLIENT UNPAUSE >/dev/null' EXIT
log "prestop: writes paused, waiting for the replicas to catch up"

deadline=$(($(now) + HANDOVER_TIMEOUT_SECONDS))
while :; do
  info="$(replication)"
  target="$(echo "$info" | sed -n 's/^master_repl_offset://p')"
  online="$(echo "$info" | group_replicas)"
  behind="$(echo "$online" | grep -v "offset=$target,")"
  [ -n "$target" ] && [ -n "$online" ] && [ -z "$behind" ] && break
  if [ "$(now)" -ge "$deadline" ]; then
    log "prestop: the replicas did not catch up within ${HANDOVER_TIMEOUT_SECONDS}s; stopping without a handover"
    exit 0
  fi
  sleep 0.05
done

asked=""
for pod in $GROUP_PODS; do
  reply="$(ask "$pod.$GROUP_DOMAIN" "$SENTINEL_PORT" "$SENTINEL_PEER_USER" "$SENTINEL_PEER_PASSWORD_FILE" \
    SENTINEL FAILOVER "$MASTER_NAME")"
  if [ "$reply" = OK ]; then
    asked="$pod"
    break
  fi
done
if [ -z "$asked" ]; then
  log "prestop: no Sentinel started a failover; stopping without a handover"
  exit 0
fi

deadline=$(($(now) + HANDOVER_TIMEOUT_SECONDS))
while :; do
  if primary="$(sentinel_primary)" && [ "$primary" != "$SELF" ]; then
    break
  fi
  if [ "$(now)" -ge "$deadline" ]; then
    # A promotion may be under way: writes stay paused until the server stops, so none lands here
    # that the new primary would not have.
    trap - EXIT
    log "prestop: the Sentinels named no new primary within ${HANDOVER_TIMEOUT_SECONDS}s; writes stay paused"
    exit 0
  fi
  sleep 0.05
done

node SLAVEOF "$primary" "$VALKEY_PORT" >/dev/null
node CLIENT KILL TYPE normal >/dev/null
log "prestop: handed the primary over to $primary (failover by the Sentinel of $asked)"
