#!/bin/sh
# The Valkey container of a single pod (replicas: 1): sh single.sh
#
# Becomes valkey-server on the rendered valkey.conf. A primary that starts without the data it is
# expected to hold is fenced instead (fence.sh): it starts as a replica of FENCE_HOST, so the other
# region's replica keeps its copy (it cannot sync from a node without a link of its own) and no
# client writes to an empty primary. The log line and docs/runbooks.md say how to bring it back.
# A replica is never fenced: it copies its primary, which is what an empty replica should do.
#
# Parameters, besides fence.sh's, from the container's environment:
#   CONFIG_FILE    the rendered valkey.conf (read-only)
#   VALKEY_PORT    the server's port
#   SERVER_ROLE    primary or replica, as valkey.conf says

: "${CONFIG_FILE:?}" "${VALKEY_PORT:?}" "${SERVER_ROLE:?}"
# shellcheck source=SCRIPTDIR/fence.sh
. "$(dirname "$0")/fence.sh"

if [ "$SERVER_ROLE" = primary ]; then
  fence_check primary
  if [ "$FENCED" = yes ]; then
    fence_log "FENCED: $FENCE_REASON. Serving nothing, as a replica of $FENCE_HOST, until it holds the data again (docs/runbooks.md#runbook-a-fenced-node)"
    # Not a secret: the host is a constant; the replication password stays in the config file.
    exec valkey-server "$CONFIG_FILE" --replicaof "$FENCE_HOST $VALKEY_PORT"
  fi
fi
exec valkey-server "$CONFIG_FILE"
