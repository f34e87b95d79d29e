#!/bin/sh
# The role-label updater sidecar: sh labeler.sh
#
# Keeps the label ROLE_LABEL of its own pod equal to the Valkey node's replication role, so a
# Service selecting ROLE_LABEL=primary follows the primary after a failover. Every PERIOD_SECONDS
# it asks Valkey ROLE over the pod's unix socket and derives the label's value:
#   primary   ROLE says master; or the node replicates from a host outside this group (not ending
#             in LOCAL_DOMAIN): the DR region's head, the pod this region's clients must reach
#   replica   the node replicates from a member of this group (a host ending in LOCAL_DOMAIN)
#   unknown   no socket yet, no answer, or an error reply (the reason is logged, no secret in it)
# ROLE answers while Valkey loads its dataset (8.1.8 and 9.1.2, measured): a loading node is
# labelled by its role; its readiness probe (PING, which answers LOADING) keeps it out of the
# Service's endpoints meanwhile. Telling loading apart would take +ping in the ACL user's rules.
# When that differs from the label last applied, it PATCHes the pod (a JSON merge patch of that
# one label); it also re-applies every REAPPLY_SECONDS, in case someone edited the label. A failed
# PATCH is retried at the next period. At start it GETs the pod once to learn the current label.
#
# Parameters, from the container's environment:
#   VALKEY_SOCKET            Valkey's unixsocket (plaintext, local to the pod)
#   LABELER_USER             the ACL user that may run ROLE (rules -@all +role)
#   LABELER_PASSWORD_FILE    its password, re-read at each period (a rotated file is picked up)
#   POD_NAME                 this pod's name (downward API: metadata.name)
#   POD_NAMESPACE            its namespace; when empty, read from POD_NAMESPACE_FILE
#   POD_NAMESPACE_FILE       default /var/run/secrets/kubernetes.io/serviceaccount/namespace
#   TOKEN_FILE               the ServiceAccount token, re-read at each request (it is rotated);
#                            default /var/run/secrets/kubernetes.io/serviceaccount/token
#   API_CA_FILE              the API server's CA; default .../serviceaccount/ca.crt
#   KUBERNETES_SERVICE_HOST  the API server (set by the kubelet)
#   KUBERNETES_SERVICE_PORT  its port (set by the kubelet)
#   ROLE_LABEL               the label's key, e.g. valkey.io/role
#   LOCAL_DOMAIN             the suffix of this group's pod names: .<headless>.<namespace>.svc.<domain>
#   PERIOD_SECONDS           seconds between two ROLE queries; default 1
#   REAPPLY_SECONDS          re-apply an unchanged label this often; default 30
#
# Secrets never reach an argument (/proc/<pid>/cmdline) or the log: the password goes to curl's
# stdin through printf, a shell builtin; the token as a curl config read from stdin (-K -).
# The image has busybox ash and curl, no valkey-cli: RESP is spoken through curl's telnet://,
# which passes stdin through (doubling any 0xFF byte) and prints the replies until Valkey closes
# the connection, which QUIT asks for.

: "${VALKEY_SOCKET:?}" "${LABELER_USER:?}" "${LABELER_PASSWORD_FILE:?}" "${POD_NAME:?}"
: "${KUBERNETES_SERVICE_HOST:?}" "${KUBERNETES_SERVICE_PORT:?}" "${ROLE_LABEL:?}" "${LOCAL_DOMAIN:?}"
sa=/var/run/secrets/kubernetes.io/serviceaccount
TOKEN_FILE="${TOKEN_FILE:-$sa/token}"
API_CA_FILE="${API_CA_FILE:-$sa/ca.crt}"
PERIOD_SECONDS="${PERIOD_SECONDS:-1}"
REAPPLY_SECONDS="${REAPPLY_SECONDS:-30}"
namespace="${POD_NAMESPACE:-}"
if [ -z "$namespace" ]; then
  namespace="$(cat "${POD_NAMESPACE_FILE:-$sa/namespace}")" || exit 2
fi
# Names go into a JSON string and a URL unquoted: allow only what Kubernetes allows in them.
case "$ROLE_LABEL$namespace$POD_NAME" in
  *[!A-Za-z0-9./_-]*)
    echo "labeler: ROLE_LABEL, the namespace and POD_NAME may hold only letters, digits, . / _ -" >&2
    exit 2
    ;;
esac
case "$REAPPLY_SECONDS" in
  '' | *[!0-9]*)
    echo "labeler: REAPPLY_SECONDS must be a whole number of seconds" >&2
    exit 2
    ;;
esac
# A leading dot, so "x.sessions-headless..." matches and "xsessions-headless..." does not; DNS
# names may end in a dot.
domain="${LOCAL_DOMAIN%.}"
domain=".${domain#.}"
case "$KUBERNETES_SERVICE_HOST" in
  *:*) api_host="[$KUBERNETES_SERVICE_HOST]" ;; # IPv6
  *) api_host="$KUBERNETES_SERVICE_HOST" ;;
esac
pod_url="https://$api_host:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$namespace/pods/$POD_NAME"
cr="$(printf '\r')"
nl='
'

log() {
  echo "labeler: $*"
}

# One RESP command, its arguments as bulk strings; their lengths in bytes (wc -c reads each one from
# stdin). A shell function: its arguments never reach an exec.
resp() {
  printf '*%d\r\n' $#
  for arg; do
    printf '$%d\r\n%s\r\n' "$(printf %s "$arg" | wc -c)" "$arg"
  done
}

# Sets `role` to primary, replica or unknown, and `why` to the reason of an unknown.
ask_role() {
  role=unknown
  if [ ! -S "$VALKEY_SOCKET" ]; then
    why="no socket at $VALKEY_SOCKET (Valkey not started?)"
    return
  fi
  if ! password="$(cat "$LABELER_PASSWORD_FILE")"; then
    why="cannot read LABELER_PASSWORD_FILE"
    return
  fi
  reply="$(
    {
      resp AUTH "$LABELER_USER" "$password"
      resp ROLE
      resp QUIT
    } | curl -sS --max-time 2 --unix-socket "$VALKEY_SOCKET" telnet://localhost 2>&1
  )"
  code=$?
  password=
  # Replies: +OK (AUTH), then *3 $6 master ... or *5 $5 slave $<n> <host> :<port> ..., then +OK (QUIT).
  auth="" head="" kind="" host=""
  {
    read -r auth
    read -r head
    read -r _
    read -r kind
    read -r _
    read -r host
  } <<EOF
$reply
EOF
  auth="${auth%"$cr"}" head="${head%"$cr"}" kind="${kind%"$cr"}" host="${host%"$cr"}"
  if [ "$auth" != +OK ]; then
    case "$auth" in
      -*) why="AUTH refused: ${auth#-}" ;;
      "") why="no reply from Valkey (curl exit $code)" ;;
      *) why="no reply from Valkey (curl exit $code: $auth)" ;;
    esac
    return
  fi
  case "$head:$kind" in
    -*) why="ROLE refused: ${head#-}" ;;
    "*3:master") role=primary ;;
    "*5:slave")
      host="${host%.}"
      case "$host" in
        *"$domain") role=replica ;;
        # Fenced (fence.sh): it replicates from a name that resolves nowhere, it is nobody's head.
        *.invalid) role=replica ;;
        *) role=primary ;;
      esac
      ;;
    *) why="unexpected ROLE reply: $head $kind" ;;
  esac
}

# api METHOD [curl options]: sends one request for this pod; sets `status` (000 when no HTTP reply)
# and `body` (the reply, or curl's error).
api() {
  method="$1"
  shift
  if ! token="$(cat "$TOKEN_FILE")"; then
    status=000 body="cannot read TOKEN_FILE"
    return
  fi
  out="$(
    printf 'header = "Authorization: Bearer %s"\n' "$token" |
      curl -sS --max-time 5 --cacert "$API_CA_FILE" -K - -X "$method" -w '\n%{http_code}' "$@" "$pod_url" 2>&1
  )"
  token=
  status="${out##*"$nl"}"
  body="${out%"$nl"*}"
}

# The string value of "key" in a JSON text (its first occurrence), or nothing; \" inside it is
# taken for a quote. Kubernetes' label keys and values hold no quote, and no brace.
json_string() {
  case "$1" in
    *"\"$2\":\""* | *"\"$2\": \""*) ;;
    *) return ;;
  esac
  rest="${1#*"\"$2\":"}"
  rest="${rest#*\"}"
  value=""
  while true; do
    case "$rest" in
      *\"*) ;;
      *) break ;;
    esac
    part="${rest%%\"*}"
    rest="${rest#*\"}"
    case "$part" in
      *\\) value="$value${part%?}\"" ;;
      *)
        value="$value$part"
        break
        ;;
    esac
  done
  printf %s "$value"
}

# Why a request failed: the HTTP status and the Status object's reason and message.
failure() {
  case "$status" in
    000) printf '%s' "no HTTP reply: $body" ;;
    *) printf '%s' "HTTP $status $(json_string "$body" reason): $(json_string "$body" message)" ;;
  esac
}

# The current value of ROLE_LABEL in a Pod's JSON, or nothing.
label_of() {
  case "$1" in
    *'"labels":{'*) labels="${1#*'"labels":{'}" ;;
    *'"labels": {'*) labels="${1#*'"labels": {'}" ;;
    *) return ;;
  esac
  json_string "{${labels%%\}*}}" "$ROLE_LABEL"
}

now() {
  date +%s
}

run() {
  applied=""
  api GET
  case "$status" in
    2??) applied="$(label_of "$body")" ;;
    *) log "GET pod failed, the label will be set anyway: $(failure)" ;;
  esac
  log "started; role label is ${applied:-(none)}"
  last_apply=0 last_why="" last_failure="" last_failure_at=0
  while true; do
    ask_role
    if [ "$role" = unknown ]; then
      [ "$why" != "$last_why" ] && log "valkey: $why"
      last_why="$why"
    else
      last_why=""
    fi
    if [ "$role" != "$applied" ] || [ $(($(now) - last_apply)) -ge "$REAPPLY_SECONDS" ]; then
      api PATCH -H "Content-Type: application/merge-patch+json" \
        --data-binary "{\"metadata\":{\"labels\":{\"$ROLE_LABEL\":\"$role\"}}}"
      case "$status" in
        2??)
          [ "$role" != "$applied" ] && log "role label ${applied:-(none)} -> $role"
          applied="$role" last_apply="$(now)" last_failure=""
          ;;
        *)
          # Once per distinct failure, and again every REAPPLY_SECONDS while it lasts.
          message="PATCH to $role failed, will retry: $(failure)"
          if [ "$message" != "$last_failure" ] || [ $(($(now) - last_failure_at)) -ge "$REAPPLY_SECONDS" ]; then
            log "$message"
            last_failure="$message" last_failure_at="$(now)"
          fi
          ;;
      esac
    fi
    sleep "$PERIOD_SECONDS"
  done
}

# PID 1 ignores signals it does not handle, and runs a trap only once its foreground command
# (a curl of up to 5 s) has ended. So the loop runs in a child, which SIGTERM ends at once (traps
# are reset in a subshell), and this shell only waits for it.
trap 'kill "$worker" 2>/dev/null; exit 0' TERM INT
run &
worker=$!
wait "$worker"
