#!/bin/sh
# The Valkey container of a group member: sh start.sh
#
# Decides this pod's role from the group (group.sh), writes the server's config file on the pod's
# writable runtime volume and becomes valkey-server. The file is written anew at every start: what
# Sentinel's CONFIG REWRITE put there last time (a role that may be stale now) is never read back.
#
#   include <the rendered valkey.conf>       every setting Pulumi renders, read-only
#   replica-announce-ip <this pod's name>    the peers and Sentinels reach it by name, not by IP
#   replica-announced no                     a follower only (group.sh follow_target tells them apart)
#   replicaof <primary> <port>               unless this pod is the primary
#   include <masterauth.conf>                the replication password, last; every member needs it,
#                                            the primary too: Sentinel may make it a replica
#
# When the Sentinels name this very pod as the primary, it was the primary before it stopped (a
# crash, a kill, a restart too quick for the Sentinels to notice); so it was when, without a
# Sentinel quorum, the other members still replicate it. Starting as the primary again would give
# it a new replication ID (Valkey does not keep it across a restart with AOF): every replica, the
# other region too, would copy the whole dataset from it, and lose what it had received that this
# pod's AOF had not. So it waits for the Sentinels to promote a replica, for at most
# FAILOVER_WAIT_SECONDS, and then joins as that one's replica; if none was promoted by then (no
# replica could take over), it starts as the primary.
#
# A member of a leading group that starts without the data it is expected to hold, or that would
# be the primary on an AOF a crash cut (fence.sh), never starts as the primary: when the group
# names it, it waits for the Sentinels to promote a member that holds the data, as above, and
# joins that one; when none is promoted, it starts fenced, as a replica of FENCE_HOST. Either way
# it starts with replica-priority 0, so no Sentinel promotes it before it has copied the data;
# probe.sh lifts the fence (and the priority) once it has.
#
# In a group that follows another region (GROUP_MODE=follower), there are no Sentinels: the pod
# follows what follow_target (group.sh) says, always as a replica, and announces a name that
# resolves nowhere (ANNOUNCE_SUFFIX, under .invalid): the other region's primary lists it, and that
# region's Sentinels must never mistake it for their own pod of the same name, nor reach it.
#
# A group that migrates from an existing server by replication (MIGRATING=yes, login.sh) is a
# following group whose upstream is that source. Its head logs in there with the source's login,
# written at the end of the runtime config; the other members with the group's own. Replicating
# replaces a node's dataset with the source's, so a member copies only onto a volume that belongs
# to the migration: one that held no data when the migration began (MIGRATION_FILE records it, on
# the volume). A volume that holds data from before, the instance's own, is fenced instead (a
# replica of FENCE_HOST, never Ready): it keeps its data, the rollout stops at this pod, and the log
# says why (docs/migration.md#live-replication). After the cut-over (the record says so) no member
# replicates the source again. Once the group leads again, the record goes.
#
# Parameters, besides group.sh's and login.sh's, from the container's environment:
#   CONFIG_FILE             the rendered valkey.conf (read-only)
#   MASTERAUTH_CONFIG_FILE  the file with the masterauth line
#   RUNTIME_CONFIG_FILE     where to write the server's config file (writable, the pod's own)
#   FAILOVER_WAIT_SECONDS   how long to wait for the Sentinels to promote another pod
#   ANNOUNCE_SUFFIX         follower only: the name announced is <pod>.<suffix>
#   MIGRATION_FILE          on the data volume: present while its data comes from the migration

: "${CONFIG_FILE:?}" "${MASTERAUTH_CONFIG_FILE:?}" "${RUNTIME_CONFIG_FILE:?}" "${FAILOVER_WAIT_SECONDS:?}"
# shellcheck source=SCRIPTDIR/group.sh
. "$(dirname "$0")/group.sh"
# shellcheck source=SCRIPTDIR/fence.sh
. "$(dirname "$0")/fence.sh"
# shellcheck source=SCRIPTDIR/login.sh
. "$(dirname "$0")/login.sh"

# A migrating member's volume (login.sh's record): an empty one belongs to the migration (recorded
# before the server writes anything; fence_check already holds it until it has copied); one that
# holds data without a record holds the instance's own and is fenced, for good, with the reason in
# FENCE_FILE; one whose record says the migration was cut over never replicates the source again.
migration_check() {
  case "$(migration_state)" in
    source) return 0 ;;
    cut-over)
      is_source "$PRIMARY $PRIMARY_PORT" || return 0
      log "the migration was cut over (a member was promoted): never the source again; waiting, as a replica of $CUT_OVER_HOST, for a member to be promoted or for the pulumi up that ends the migration (docs/migration.md#live-replication)"
      PRIMARY="$CUT_OVER_HOST"
      PRIMARY_PORT="$VALKEY_PORT"
      return 0
      ;;
  esac
  if [ -f "$AOF_MANIFEST_FILE" ]; then
    fence_record "this volume holds the instance's own data, from before the migration: replicating the source would replace it (docs/migration.md#live-replication)"
    PRIMARY="$FENCE_HOST"
    PRIMARY_PORT="$VALKEY_PORT"
    return 0
  fi
  echo source >"$MIGRATION_FILE.tmp" || exit 1
  mv "$MIGRATION_FILE.tmp" "$MIGRATION_FILE" || exit 1
  sync
}

announce="$SELF"
if [ "$GROUP_MODE" = follower ]; then
  : "${ANNOUNCE_SUFFIX:?}"
  # A follower is a replica whatever it holds, and copies its head or the other region; an empty
  # one is still recorded as fenced, so it is not Ready (nor promoted by a person going by the
  # readiness) until it holds the data (probe.sh).
  fence_check replica
  announce="$POD_NAME.$ANNOUNCE_SUFFIX"
  target="$(follow_target)"
  PRIMARY="${target% *}"
  PRIMARY_PORT="${target#* }"
  if migrating; then
    migration_check
  fi
  log "following $PRIMARY:$PRIMARY_PORT"
else
  # The group leads: whatever it migrated from, its data is its own now.
  rm -f "${MIGRATION_FILE:-/nonexistent}" || exit 1
  find_primary
  PRIMARY_PORT="$VALKEY_PORT"
  if [ "$PRIMARY" = "$SELF" ]; then
    fence_check primary
  else
    fence_check replica
    # The tool held every member at replica-priority 0 so that the Sentinels, which see their
    # primary turn into a replica, promote none of them beside the other region; a member that
    # restarts before this stack's pulumi up (which makes the group a following one) would come
    # back with its rendered priority, so it holds itself too.
    if upstream="$(replicates_outside "$PRIMARY")"; then
      HELD=yes
      log "the group's primary $PRIMARY replicates $upstream, outside the group (a switchover): replica-priority 0"
    fi
  fi
fi
if [ "$GROUP_MODE" = leader ] && [ "$PRIMARY" = "$SELF" ] && { [ "$PRIMARY_SOURCE" != bootstrap ] || [ "$FENCED" = yes ]; }; then
  if [ "$FENCED" = yes ]; then
    fence_log "FENCED: $FENCE_REASON; the group names this pod (from the $PRIMARY_SOURCE)"
  fi
  case "$PRIMARY_SOURCE" in
    sentinels) why="the group still names this pod" ;;
    replicas) why="the other members still replicate this pod" ;;
    *) why="no member is primary and this pod would be" ;;
  esac
  log "$why: waiting up to ${FAILOVER_WAIT_SECONDS}s for the Sentinels to promote a replica"
  waited=0
  while [ "$waited" -lt "$FAILOVER_WAIT_SECONDS" ]; do
    sleep 1
    waited=$((waited + 1))
    if now="$(sentinel_primary)" && [ "$now" != "$SELF" ]; then
      PRIMARY="$now"
      log "the Sentinels promoted $PRIMARY after ${waited}s"
      break
    fi
  done
fi

quote() {
  printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"
}

# Never start from the previous file (Sentinel may have rewritten its role): remove it first, and
# stop if the new one cannot be written.
rm -f "$RUNTIME_CONFIG_FILE" || exit 1
# It may hold the source's password: readable by this user only (the server's own files keep the
# image's umask).
umask_before="$(umask)"
umask 077
{
  echo "# Written by start.sh at the container's start; Sentinel may rewrite it. Never read back."
  echo "include $(quote "$CONFIG_FILE")"
  echo "replica-announce-ip $(quote "$announce")"
  # A follower says so in INFO (replica_announced:0), by which follow_target tells it from a
  # member still running a leading group's template; no Sentinel lists it (none reaches it).
  if [ "$GROUP_MODE" = follower ]; then
    echo "replica-announced no"
  fi
  if [ "${HELD:-no}" = yes ]; then
    echo "replica-priority 0"
  fi
  if [ "${FENCED:-no}" = yes ]; then
    echo "replica-priority 0"
    [ "$PRIMARY" = "$SELF" ] && PRIMARY="$FENCE_HOST"
  fi
  if [ "$PRIMARY" != "$SELF" ]; then
    echo "replicaof $(quote "$PRIMARY") $PRIMARY_PORT"
  fi
  echo "include $(quote "$MASTERAUTH_CONFIG_FILE")"
  if is_source "$PRIMARY $PRIMARY_PORT"; then
    login_conf "$PRIMARY $PRIMARY_PORT" || exit 1
  fi
} >"$RUNTIME_CONFIG_FILE.tmp" || exit 1
# Migrating, the server keeps it too: a CONFIG REWRITE writes masterauth, the source's, into this file.
migrating || umask "$umask_before"
mv "$RUNTIME_CONFIG_FILE.tmp" "$RUNTIME_CONFIG_FILE" || exit 1
if [ "$PRIMARY" = "$SELF" ]; then
  log "starting as the primary"
elif [ "$PRIMARY" = "$FENCE_HOST" ] && [ "$GROUP_MODE" = follower ]; then
  fence_log "FENCED: $FENCE_REASON. Serving nothing, as a replica of $FENCE_HOST: remove the migration from the stack config (this instance keeps its data), or migrate with the keyspace copy into an instance of its own"
elif [ "$PRIMARY" = "$FENCE_HOST" ]; then
  fence_log "no member was promoted: serving nothing, as a replica of $FENCE_HOST, until one holding the data is the primary (docs/runbooks.md#runbook-a-fenced-node)"
elif [ "${FENCED:-no}" = yes ]; then
  fence_log "starting as a replica of $PRIMARY with replica-priority 0 until it has copied the data"
else
  log "starting as a replica of $PRIMARY"
fi
exec valkey-server "$RUNTIME_CONFIG_FILE"
