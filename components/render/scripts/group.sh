# Functions shared by the group's scripts (sourced, never run): which pod of a group is the
# primary, or, in a group that follows another region, whom each member follows. Sourced as
# `. /etc/valkey/group.sh`.
#
# A group that leads (GROUP_MODE=leader, the primary region):
# The answer comes from the group, never from what this pod was before, in this order:
#   1. the Sentinels: when at least QUORUM of them name the same primary, that one;
#   2. the Valkey nodes: a peer that says it is a primary (ROLE), the lowest ordinal first;
#   3. nobody answers (a new group, or every pod was down): the first pod, GROUP_PODS' first.
#
# A group that follows another region (GROUP_MODE=follower) has no Sentinel and no primary: its
# head, the lowest-ordinal member that answers PING, replicates from the other region
# (UPSTREAM_FILE), and every other member from the head. One stream crosses regions. Once a person
# has promoted a member (REPLICAOF NO ONE), every other member follows that one.
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

# Sets PRIMARY (a pod's DNS name) and PRIMARY_SOURCE (sentinels, peers or bootstrap).
find_primary() {
  if PRIMARY="$(sentinel_primary)"; then
    PRIMARY_SOURCE=sentinels
  elif PRIMARY="$(peer_primary)"; then
    PRIMARY_SOURCE=peers
  else
    first="${GROUP_PODS%% *}"
    PRIMARY="$first.$GROUP_DOMAIN"
    PRIMARY_SOURCE=bootstrap
  fi
  log "primary $PRIMARY (from the $PRIMARY_SOURCE)"
}

# A follower group's member: "<host> <port>" of what it should replicate from now. A member that
# is a primary was promoted by a person (docs/runbooks.md): everyone follows it. Else the head (the
# lowest-ordinal member whose link is up) follows the other region, and the others follow the head.
follow_target() {
  for pod in $GROUP_PODS; do
    [ "$pod" = "$POD_NAME" ] && continue
    role="$(ask "$pod.$GROUP_DOMAIN" "$VALKEY_PORT" "$PROBE_USER" "$PROBE_PASSWORD_FILE" ROLE | head -n 1)"
    if [ "$role" = master ]; then
      echo "$pod.$GROUP_DOMAIN $VALKEY_PORT"
      return 0
    fi
  done
  for pod in $GROUP_PODS; do
    if [ "$pod" = "$POD_NAME" ]; then
      cat "$UPSTREAM_FILE"
      return 0
    fi
    # A head is a replica whose link is up: one just restarted, or still copying, is not
    # followed (the others would copy its stale or partial data).
    if [ "$(ask "$pod.$GROUP_DOMAIN" "$VALKEY_PORT" "$PROBE_USER" "$PROBE_PASSWORD_FILE" ROLE | sed -n '1p;4p' |
      tr '\n' ' ')" = "slave connected " ]; then
      echo "$pod.$GROUP_DOMAIN $VALKEY_PORT"
      return 0
    fi
  done
  return 1
}
