# shellcheck disable=SC2034 # FENCED and FENCE_REASON are read by the scripts that source this file
# Functions shared by start.sh and single.sh (sourced, never run): may this node be copied from?
#
# A node that starts without the data it is expected to hold (a lost or replaced volume, a claim
# recreated empty) must never become what others copy from: as a primary, its replicas and the
# other region would each full-sync its empty dataset and lose theirs (measured on 8.1.8 and
# 9.1.2). Such a node is fenced: it starts as a replica of FENCE_HOST, a name that resolves
# nowhere, with replica-priority 0. So it refuses writes (READONLY), refuses every replica
# (NOMASTERLINK: a replica without its own link serves no sync), and no Sentinel ever promotes it.
#
# "Expected to hold data" is never read from the volume itself (an empty volume looks exactly like
# a new one): it comes from DATA_EXPECTED, the instance's marker ConfigMap, which Pulumi creates
# once the instance's first rollout was Ready (components/valkey_server.py). Before the marker
# exists, an empty volume is a first start, and the node bootstraps as usual.
#
# The fence is kept in FENCE_FILE on the data volume, so a restart of a fenced node is fenced again
# even though the server wrote an (empty) AOF meanwhile. probe.sh lifts it, once the node holds
# copied data (see there).
#
# Parameters, from the container's environment (components/render/pod_scripts.py lists them):
#   FENCE_FILE          on the data volume; present while the node is fenced, first line the reason.
#                       Empty without persistence: a volume that never outlives its pod expects
#                       no data, and nothing is fenced.
#   FENCE_HOST          what a fenced node replicates from: a name under .invalid, resolving nowhere
#   AOF_MANIFEST_FILE   the AOF's manifest: the server writes it at its first start on a volume
#   DATA_EXPECTED       "yes" once the marker ConfigMap exists; empty before (an optional key)

if [ -n "${FENCE_FILE:-}" ]; then
  : "${FENCE_HOST:?}" "${AOF_MANIFEST_FILE:?}"
fi

fence_log() {
  echo "fence: $*" >&2
}

# Sets FENCED (yes or no) and FENCE_REASON; begins a fence (writes FENCE_FILE) when this volume has
# no data and the instance has held data. Exits when the fence cannot be recorded: a node that
# cannot say it is fenced must not start at all.
fence_check() {
  FENCED=no
  FENCE_REASON=""
  [ -n "${FENCE_FILE:-}" ] || return 0
  if [ -f "$FENCE_FILE" ]; then
    FENCED=yes
    FENCE_REASON="$(head -n 1 "$FENCE_FILE")"
    return 0
  fi
  [ -f "$AOF_MANIFEST_FILE" ] && return 0
  if [ "${DATA_EXPECTED:-}" != yes ]; then
    fence_log "no data on this volume and no marker: a first start, nothing to protect"
    return 0
  fi
  FENCED=yes
  FENCE_REASON="started on a volume without data ($AOF_MANIFEST_FILE is missing) after the instance had held data"
  { echo "$FENCE_REASON"; echo "since $(date -u +%Y-%m-%dT%H:%M:%SZ)"; } >"$FENCE_FILE.tmp" || exit 1
  mv "$FENCE_FILE.tmp" "$FENCE_FILE" || exit 1
  # On disk before the server writes its first AOF: a crash must not leave a manifest without it.
  sync
}
