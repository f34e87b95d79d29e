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
# A node whose AOF's last file ends inside a command (a crash of its machine cut it) is fenced too:
# it lost that tail, which its replicas and the other region may still hold (aof_tail_complete).
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

# The AOF's incremental file that the server appends to, as the manifest names it (the last one of
# type i). It is the file a crash cuts: the base and older files were complete and flushed before
# the server moved on from them (except in the moment right after a rewrite, when the old file's
# fsync may still be running: a crash then cuts the older file, which the server refuses to load,
# so that node never starts and serves nothing either).
last_incr_file() {
  awk '{ name = ""; kind = ""
         for (i = 1; i < NF; i += 2) { if ($i == "file") name = $(i + 1); if ($i == "type") kind = $(i + 1) }
         if (kind == "i") last = name }
       END { print last }' "$AOF_MANIFEST_FILE"
}

# Fails when the AOF's last file does not end with a whole command, which is what a crash of the
# machine leaves behind (the kernel keeps what the process wrote, so a process crash rarely does;
# a kill during one large write can). The server would load it anyway (aof-load-truncated yes,
# Valkey's default, and what a replica should do with a copy) and, as a primary, hand the shorter
# dataset to every replica, which would lose the tail they still hold. valkey-check-aof (the
# image's link to valkey-server) reads this one file, never the base. Only its verdict "is not
# valid" counts: a check that cannot run (no such tool in a custom image, an unreadable file) is
# logged, and the server's own load decides.
aof_tail_complete() {
  incr="$(last_incr_file)"
  [ -n "$incr" ] || return 0
  if ! command -v valkey-check-aof >/dev/null 2>&1; then
    fence_log "the image has no valkey-check-aof: an AOF cut by a crash cannot be told from a whole one"
    return 0
  fi
  verdict="$(valkey-check-aof "$(dirname "$AOF_MANIFEST_FILE")/$incr" 2>&1)" && return 0
  case "$verdict" in
    *" is not valid"*) return 1 ;;
  esac
  fence_log "the AOF's last file ($incr) could not be checked: $(printf '%s\n' "$verdict" | tail -n 1)"
  return 0
}

# fence_check primary|replica: sets FENCED (yes or no) and FENCE_REASON. Begins a fence (writes
# FENCE_FILE) when this volume has no data and the instance has held data, or, for a node that
# would be the primary (what others copy from), when its AOF was cut. A replica's copy is replaced
# by its primary's, or is the best there is while its primary is away: it is never checked for a
# cut. Exits when the fence cannot be recorded: a node that cannot say it is fenced must not start
# at all.
fence_check() {
  FENCED=no
  FENCE_REASON=""
  [ -n "${FENCE_FILE:-}" ] || return 0
  if [ -f "$FENCE_FILE" ]; then
    FENCED=yes
    FENCE_REASON="$(head -n 1 "$FENCE_FILE")"
    return 0
  fi
  if [ -f "$AOF_MANIFEST_FILE" ]; then
    # Before the marker, a first deployment: nothing to protect, as for an empty volume.
    [ "${1:?fence_check primary|replica}" = primary ] && [ "${DATA_EXPECTED:-}" = yes ] || return 0
    aof_tail_complete && return 0
    FENCE_REASON="the AOF's last file ($(last_incr_file)) does not end with a whole command (valkey-check-aof): a crash cut its tail, which a replica may still hold"
  elif [ "${DATA_EXPECTED:-}" != yes ]; then
    fence_log "no data on this volume and no marker: a first start, nothing to protect"
    return 0
  else
    FENCE_REASON="started on a volume without data ($AOF_MANIFEST_FILE is missing) after the instance had held data"
  fi
  fence_record "$FENCE_REASON"
}

# fence_record REASON: begins a fence (sets FENCED and FENCE_REASON, writes FENCE_FILE). Exits when
# the fence cannot be recorded.
fence_record() {
  FENCED=yes
  FENCE_REASON="$1"
  { echo "$FENCE_REASON"; echo "since $(date -u +%Y-%m-%dT%H:%M:%SZ)"; } >"$FENCE_FILE.tmp" || exit 1
  mv "$FENCE_FILE.tmp" "$FENCE_FILE" || exit 1
  # On disk before the server writes its first AOF: a crash must not leave a manifest without it.
  sync
}
