#!/bin/sh
# The Sentinel container of a group member: sh sentinel.sh
#
# Writes the Sentinel's config file on the pod's writable Sentinel volume and becomes the
# Sentinel. Sentinel rewrites that file as it learns (epochs, peers, replicas); it is written anew
# at every start, so nothing stale is ever read back:
#
#   <the rendered sentinel.conf>              ports, TLS, hostnames, its own users
#   sentinel myid <sha1 of this pod's name>   the same identity at every start: a new one would
#                                             stay behind in every peer's list as a Sentinel that
#                                             never answers, and raise the votes a failover needs
#   sentinel announce-ip <this pod's name>
#   sentinel monitor <name> <primary> <port> <quorum>   the primary the group names (group.sh)
#   <the rendered sentinel-master.conf>       how to log in to the nodes, timeouts
#
# Parameters, besides group.sh's, from the container's environment:
#   SENTINEL_CONFIG_FILE          the rendered global part (read-only)
#   SENTINEL_MASTER_CONFIG_FILE   the rendered per-master part (read-only)
#   SENTINEL_RUNTIME_CONFIG_FILE  where to write the Sentinel's config file (writable)

: "${SENTINEL_CONFIG_FILE:?}" "${SENTINEL_MASTER_CONFIG_FILE:?}" "${SENTINEL_RUNTIME_CONFIG_FILE:?}"
# shellcheck source=SCRIPTDIR/group.sh
. "$(dirname "$0")/group.sh"

PEERS_INCLUDE_SELF=yes
find_primary
myid="$(printf '%s' "$SELF" | sha1sum | cut -c1-40)"
{
  cat "$SENTINEL_CONFIG_FILE"
  echo "sentinel myid $myid"
  echo "sentinel announce-ip \"$SELF\""
  echo "sentinel monitor $MASTER_NAME \"$PRIMARY\" $VALKEY_PORT $QUORUM"
  cat "$SENTINEL_MASTER_CONFIG_FILE"
} >"$SENTINEL_RUNTIME_CONFIG_FILE.tmp" || exit 1
mv "$SENTINEL_RUNTIME_CONFIG_FILE.tmp" "$SENTINEL_RUNTIME_CONFIG_FILE" || exit 1
exec valkey-server "$SENTINEL_RUNTIME_CONFIG_FILE" --sentinel
