# Functions shared by the group's scripts (sourced, never run): which pod of a group is the
# primary, or, in a group that follows another region, whom each member follows. Sourced as
# `. /etc/valkey/group.sh`.
#
# A group that leads (GROUP_MODE=leader, the primary region):
# The answer comes from the group, never from what this pod was before, in this order:
#   1. the Sentinels: when at least QUORUM of them name the same primary, that one;
#   2. the Valkey nodes: a peer that says it is a primary (ROLE), the lowest ordinal first;
#   3. the member the peers replicate from (ROLE), the one most of them name that does not answer
#      as a replica itself: the primary that stopped, this pod too. So the member a person
#      promoted in a following group (region 2's head at a promotion), which that group's rollout
#      to a leading one may restart first, with no Sentinel yet to hand it over, comes back as the
#      primary (start.sh waits for a failover first, as for any restarted primary), and its
#      members keep following it, instead of all following the first pod, itself a replica;
#   4. nobody answers (a new group, or every pod was down): the first pod, GROUP_PODS' first.
#
# A group that follows another region (GROUP_MODE=follower) has no Sentinel and no primary: its
# head replicates from the other region (UPSTREAM_FILE), and every other member from the head. One
# stream crosses regions. The head stays the head while its link is up; when it is lost, the member
# with the most data takes its place (follow_target). Once a person has promoted a member
# (REPLICAOF NO ONE), every other member follows that one.
#
# Parameters, from the container's environment (components/render/pod_scripts.py lists them):
#   POD_NAME                 this pod's name (downward API)
#   GROUP_PODS               the group's pod names, ordinal order, space-separated
#   GROUP_DOMAIN             <headless-service>.<namespace>.svc.<cluster-domain>: pod P is P.GROUP_DOMAIN
#   VALKEY_PORT              the nodes' port
#   SENTINEL_PORT            the Sentinels' port
#   MASTER_NAME              the name the Sentinels monitor the group under
#   QUORUM                   a majority of the group's Sentinels
#   VALKEY_TLS               yes: connect over TLS, verifying against VALKEY_CA_FILE; no: plaintext
#   VALKEY_CA_FILE           the CA bundle (with VALKEY_TLS=yes only)
#   PROBE_USER               the nodes' user that may PING and ask ROLE
#   PROBE_PASSWORD_FILE      its password
#   GROUP_MODE               leader or follower
#   UPSTREAM_FILE            a follower group's upstream, "<host> <port>" (follower only)
#   SENTINEL_PEER_USER       the Sentinels' peer user, which may ask for the primary
#   SENTINEL_PEER_PASSWORD_FILE  its password
# Passwords go to valkey-cli through REDISCLI_AUTH, never as an argument.

: "${POD_NAME:?}" "${GROUP_PODS:?}" "${GROUP_DOMAIN:?}" "${VALKEY_PORT:?}" "${SENTINEL_PORT:?}"
: "${MASTER_NAME:?}" "${QUORUM:?}" "${PROBE_USER:?}" "${PROBE_PASSWORD_FILE:?}"
: "${SENTINEL_PEER_USER:?}" "${SENTINEL_PEER_PASSWORD_FILE:?}"
case "${GROUP_MODE:-}" in
  leader) ;;
  follower) : "${UPSTREAM_FILE:?}" ;;
  *)
    echo "GROUP_MODE must be leader or follower" >&2
    exit 2
    ;;
esac
case "${VALKEY_TLS:-}" in
  yes) : "${VALKEY_CA_FILE:?}" ;;
  no) ;;
  *)
    echo "VALKEY_TLS must be yes or no" >&2
    exit 2
    ;;
esac

# shellcheck disable=SC2034 # read by the scripts that source this file
SELF="$POD_NAME.$GROUP_DOMAIN"
ASK_TIMEOUT_SECONDS=2

log() {
  echo "group: $*" >&2
}

# ask HOST PORT USER PASSWORD_FILE COMMAND...: one reply, raw, or nothing on any failure.
ask() {
  host="$1" port="$2" user="$3" password_file="$4"
  shift 4
  if [ "$VALKEY_TLS" = yes ]; then
    set -- --tls --cacert "$VALKEY_CA_FILE" "$@"
  fi
  # valkey-cli's -t bounds the connect only: timeout bounds a peer that accepts and never answers.
  REDISCLI_AUTH="$(cat "$password_file")" timeout "$((2 * ASK_TIMEOUT_SECONDS))" valkey-cli --no-auth-warning \
    --user "$user" -h "$host" -p "$port" -t "$ASK_TIMEOUT_SECONDS" "$@" 2>/dev/null
}

# The primary at least QUORUM Sentinels agree on; fails when they do not.
sentinel_primary() {
  answers=""
  for pod in $GROUP_PODS; do
    reply="$(ask "$pod.$GROUP_DOMAIN" "$SENTINEL_PORT" "$SENTINEL_PEER_USER" "$SENTINEL_PEER_PASSWORD_FILE" \
      SENTINEL get-master-addr-by-name "$MASTER_NAME" | head -n 1)"
    case "$reply" in
      "" | ERR* | NOAUTH* | WRONGPASS* | NOPERM* | *" "*) ;;
      *) answers="$answers$reply
" ;;
    esac
  done
  # "<votes> <host>" of the most named primary.
  best="$(printf '%s' "$answers" | sort | uniq -c | sort -rn | awk 'NR == 1 { print $1, $2 }')"
  [ -n "$best" ] && [ "${best%% *}" -ge "$QUORUM" ] || return 1
  echo "${best#* }"
}

# A peer that says it is a primary, the lowest ordinal first; fails when none does. With
# PEERS_INCLUDE_SELF=yes (sentinel.sh: its own pod's Valkey may well be the primary) this pod too.
peer_primary() {
  for pod in $GROUP_PODS; do
    [ "$pod" = "$POD_NAME" ] && [ "${PEERS_INCLUDE_SELF:-no}" != yes ] && continue
    role="$(ask "$pod.$GROUP_DOMAIN" "$VALKEY_PORT" "$PROBE_USER" "$PROBE_PASSWORD_FILE" ROLE | head -n 1)"
    if [ "$role" = master ]; then
      echo "$pod.$GROUP_DOMAIN"
      return 0
    fi
  done
  return 1
}

# The member (its DNS name) most peers replicate from; fails when no peer replicates from a member
# that could be the primary. A member that itself answered as a replica (fenced, or a following
# group's member whose head is a replica) cannot be: only one that does not answer (stopped, this
# pod at its start) is named. With PEERS_INCLUDE_SELF=yes this pod's own Valkey answers too.
replicas_primary() {
  named=""
  replicas=" "
  for pod in $GROUP_PODS; do
    [ "$pod" = "$POD_NAME" ] && [ "${PEERS_INCLUDE_SELF:-no}" != yes ] && continue
    reply="$(ask "$pod.$GROUP_DOMAIN" "$VALKEY_PORT" "$PROBE_USER" "$PROBE_PASSWORD_FILE" ROLE | head -n 2)"
    [ "$(printf '%s\n' "$reply" | head -n 1)" = slave ] || continue
    replicas="$replicas$pod.$GROUP_DOMAIN "
    host="$(printf '%s\n' "$reply" | sed -n 2p)"
    host="${host%.}"
    for member in $GROUP_PODS; do
      [ "$host" = "$member.$GROUP_DOMAIN" ] && named="$named$host
"
    done
  done
  best="$(printf '%s' "$named" | sort | uniq -c | sort -rn | awk -v replicas="$replicas" \
    'index(replicas, " " $2 " ") == 0 { print $2; exit }')"
  [ -n "$best" ] || return 1
  echo "$best"
}

# replicates_outside HOST: the host a member replicates from, when that is outside the group
# (a leading group's primary a switchover demoted, ops/switchover.py); fails otherwise, and when
# it does not answer.
replicates_outside() {
  reply="$(ask "$1" "$VALKEY_PORT" "$PROBE_USER" "$PROBE_PASSWORD_FILE" ROLE | head -n 2)"
  [ "$(printf '%s\n' "$reply" | head -n 1)" = slave ] || return 1
  upstream="$(printf '%s\n' "$reply" | sed -n 2p)"
  upstream="${upstream%.}"
  case "$upstream" in
    "" | *".$GROUP_DOMAIN") return 1 ;;
  esac
  echo "$upstream"
}

# Sets PRIMARY (a pod's DNS name) and PRIMARY_SOURCE (sentinels, peers, replicas or bootstrap).
find_primary() {
  if PRIMARY="$(sentinel_primary)"; then
    PRIMARY_SOURCE=sentinels
  elif PRIMARY="$(peer_primary)"; then
    PRIMARY_SOURCE=peers
  elif PRIMARY="$(replicas_primary)"; then
    PRIMARY_SOURCE=replicas
  else
    first="${GROUP_PODS%% *}"
    PRIMARY="$first.$GROUP_DOMAIN"
    PRIMARY_SOURCE=bootstrap
  fi
  log "primary $PRIMARY (from the $PRIMARY_SOURCE)"
}

# A follower group's member: "<host> <port>" of what it should replicate from now; fails when the
# upstream cannot be read. It asks every member INFO replication and keyspace once (this pod's own
# Valkey too, which answers unless it has not started yet), then decides, in this order:
#   1. a member that is a primary was promoted by a person (docs/runbooks.md): follow it;
#   2. a head is a member that replicates from outside the group with its link up. The first one in
#      ordinal order stays the head: this pod follows it or, if it is this pod, the upstream. A head
#      keeps its place while its link is up, so two members never trade it back and forth;
#   3. no head (it died, or its link is down): the member holding the most data (the highest
#      replication offset; among equals one holding keys, then the former head, else the lowest
#      ordinal) becomes the head. No data flows while there is no head, so every member sees the
#      same offsets and elects the same one. A pod that restarted holds no offset it can resume from (Valkey keeps
#      none across a restart), so it follows a member that does rather than copy everything across
#      regions again; only when no member answers does it follow the upstream itself. Only a
#      follower can be elected (it announces replica_announced:0): in the rollout of a leading group
#      to a following one (after a switchover) a member still on the leading template replicates
#      the old primary and would never be pointed upstream; the old primary, restarted as a
#      follower, would follow it, and it the old primary, a loop that never gets Ready.
# ROLE would not do for 3: a replica whose link is down answers offset -1 there (8.1.8, measured).
# A member with its link down cannot feed a replica (NOMASTERLINK) until it is the head: whoever
# follows it retries until the keeper of the elected member has pointed that one upstream.
# Needs SENTINEL_NODE_USER and SENTINEL_NODE_PASSWORD_FILE (the nodes' user that may ask INFO).
follow_target() {
  infos=""
  for pod in $GROUP_PODS; do
    infos="$infos$(ask "$pod.$GROUP_DOMAIN" "$VALKEY_PORT" "$SENTINEL_NODE_USER" "$SENTINEL_NODE_PASSWORD_FILE" \
      INFO replication keyspace | tr -d '\r' | awk -v pod="$pod" '{
        key = $0; sub(/:.*/, "", key)
        wanted = "^(role|master_host|master_link_status|master_repl_offset|replica_announced)$"
        if (key ~ wanted) print pod, key, substr($0, length(key) + 2)
        if (key ~ /^db[0-9]+$/ && match($0, /keys=[0-9]+/)) keys += substr($0, RSTART + 5, RLENGTH - 5)
      } END { print pod, "keys", keys + 0 }')
"
  done
  upstream="$(cat "$UPSTREAM_FILE")" || return 1
  chosen="$(printf '%s' "$infos" | awk -v pods="$GROUP_PODS" -v self="$POD_NAME" -v domain=".$GROUP_DOMAIN" '
    { value[$1, $2] = $3 }
    function outside(host) {
      sub(/\.$/, "", host)
      # A fenced member replicates from a name under .invalid (fence.sh): no upstream, no head.
      if (host ~ /\.invalid$/) return 0
      return length(host) <= length(domain) || substr(host, length(host) - length(domain) + 1) != domain
    }
    END {
      n = split(pods, order, " ")
      for (i = 1; i <= n; i++) {
        pod = order[i]
        role = value[pod, "role"]
        if (role == "master" && pod != self && promoted == "") promoted = pod
        if (role != "slave") continue
        if (value[pod, "master_link_status"] == "up" && outside(value[pod, "master_host"]) && head == "") head = pod
        offset = value[pod, "master_repl_offset"]
        if (offset !~ /^[0-9]+$/) continue
        # Only a follower (start.sh: replica-announced no) may be elected: a member still running
        # a leading group template has no keeper to point it upstream, and one that replicates
        # this very pod would make a loop.
        if (value[pod, "replica_announced"] != "0") continue
        # Among equals, a member holding keys before an empty one (after restarts every offset is
        # 0: an empty new volume must not win), then a former head (its link down) before the
        # lowest ordinal: when the other region is out of reach, the head stays where it is.
        former = outside(value[pod, "master_host"])
        holds = value[pod, "keys"] + 0 > 0
        if (best == "" || offset + 0 > most || (offset + 0 == most &&
            (holds > best_holds || (holds == best_holds && former && !best_former)))) {
          best = pod; most = offset + 0; best_former = former; best_holds = holds
        }
      }
      if (promoted != "") print promoted
      else if (head != "") print head
      else if (best != "") print best
      else print self
    }')"
  if [ "$chosen" = "$POD_NAME" ]; then
    echo "$upstream"
  else
    echo "$chosen.$GROUP_DOMAIN $VALKEY_PORT"
  fi
}
