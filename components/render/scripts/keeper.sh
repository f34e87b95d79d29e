#!/bin/sh
# A following group's keeper, in place of the Sentinel while this region follows another: sh keeper.sh
#
# Every KEEPER_INTERVAL_SECONDS it compares what this pod's Valkey replicates from with what it
# should (follow_target in group.sh: the head follows the other region, the others follow the
# head) and, once the difference has held for KEEPER_CONFIRMATIONS rounds in a row, points the
# node there (SLAVEOF). So when the head dies, the member with the most data replicates from the
# other region within seconds (a partial resync: its history is the head's), and the others follow
# it. The old head, back, follows the new one: it copies the dataset from inside the region, never
# across regions again.
#
# It never touches a node that is a primary: promoting this region is a person's decision
# (docs/runbooks.md), and a keeper must not undo it. Nor one that start.sh fenced (it replicates
# FENCE_HOST): its volume holds what no copy may replace (start.sh).
#
# In a group that migrates from a source by replication (login.sh), it sets the node's login for
# the new target (the source's, or the group's own) before it points the node there, as the
# reloader's user (the Sentinel's user may not CONFIG SET). It points a node at the source only
# while its volume's record says its data is the source's copy (may_follow_source), and records
# the cut-over on the volume as soon as a member of the group is a primary (its own node, or the
# member it should follow): after that no node of the group replicates the source again, even if
# the source takes writes again, until the pulumi up that ends the migration.
#
# Parameters, besides group.sh's, from the container's environment:
#   SENTINEL_NODE_USER            the nodes' Sentinel user (INFO, SLAVEOF), which it acts as
#   SENTINEL_NODE_PASSWORD_FILE   its password
#   KEEPER_INTERVAL_SECONDS       seconds between two rounds
#   KEEPER_CONFIRMATIONS          rounds a difference must hold before it acts
#   FENCE_HOST                    what a fenced node replicates from
#   RELOADER_USER, RELOADER_PASSWORD_FILE
#                                 migrating only: the user that sets the login (CONFIG SET)
#   MIGRATION_FILE                migrating only: the data volume's record (login.sh), mounted here

: "${SENTINEL_NODE_USER:?}" "${SENTINEL_NODE_PASSWORD_FILE:?}"
: "${KEEPER_INTERVAL_SECONDS:?}" "${KEEPER_CONFIRMATIONS:?}" "${FENCE_HOST:?}"
# shellcheck source=SCRIPTDIR/group.sh
. "$(dirname "$0")/group.sh"
# shellcheck source=SCRIPTDIR/login.sh
. "$(dirname "$0")/login.sh"

node() {
  ask 127.0.0.1 "$VALKEY_PORT" "$SENTINEL_NODE_USER" "$SENTINEL_NODE_PASSWORD_FILE" "$@"
}

trap 'exit 0' TERM INT
log "keeper: started"
seen=0
while :; do
  sleep "$KEEPER_INTERVAL_SECONDS" &
  wait $!
  info="$(node INFO replication | tr -d '\r')"
  role="$(echo "$info" | sed -n 's/^role://p')"
  if migrating && [ "$role" = master ]; then
    record_cut_over || log "keeper: could not record the cut-over on the volume"
  fi
  [ "$role" = slave ] || {
    seen=0
    continue
  }
  current="$(echo "$info" | sed -n 's/^master_host://p') $(echo "$info" | sed -n 's/^master_port://p')"
  [ "${current% *}" != "$FENCE_HOST" ] || continue
  wanted="$(follow_target)" || continue
  if migrating && ! is_source "$wanted" &&
    [ "$(ask "${wanted% *}" "${wanted#* }" "$PROBE_USER" "$PROBE_PASSWORD_FILE" ROLE | head -n 1)" = master ]; then
    record_cut_over || log "keeper: could not record the cut-over on the volume"
  fi
  if is_source "$wanted" && ! may_follow_source; then
    [ "${refused:-}" = "$wanted" ] ||
      log "keeper: not pointing this node at the source: its volume's data is $(migration_state) (login.sh)"
    refused="$wanted"
    # Still on the source (the old head, right after the cut-over): off it at once, onto nothing.
    if ! is_source "$current"; then
      continue
    fi
    wanted="$CUT_OVER_HOST $VALKEY_PORT"
  fi
  # After the cut-over a node still on the source moves at once, not after KEEPER_CONFIRMATIONS rounds:
  # should the source take writes again (its fence is undone), a resync would replace this node's data.
  if migrating && is_source "$current" && ! may_follow_source; then
    seen="$KEEPER_CONFIRMATIONS"
    last_wanted="$wanted"
  fi
  if [ "$current" = "$wanted" ]; then
    seen=0
    continue
  fi
  # The same target, KEEPER_CONFIRMATIONS rounds in a row: a target seen once is not acted on.
  [ "$wanted" = "${last_wanted:-}" ] || seen=0
  last_wanted="$wanted"
  seen=$((seen + 1))
  [ "$seen" -ge "$KEEPER_CONFIRMATIONS" ] || continue
  if migrating && ! set_login "$wanted" ask 127.0.0.1 "$VALKEY_PORT" "${RELOADER_USER:?}" "${RELOADER_PASSWORD_FILE:?}"; then
    log "keeper: could not set the login for ${wanted% *}:${wanted#* }; will retry"
    seen=0
    continue
  fi
  # shellcheck disable=SC2086 # "<host> <port>": two arguments
  if [ "$(node SLAVEOF $wanted)" = OK ]; then
    log "keeper: now following ${wanted% *}:${wanted#* } (was ${current% *}:${current#* })"
  fi
  seen=0
done
