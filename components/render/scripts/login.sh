# Functions shared by start.sh, keeper.sh and reloader.sh (sourced, never run): the login a node
# uses towards what it replicates, in a group that migrates from an existing server by replication
# (MIGRATING=yes, docs/migration.md#live-replication). Without MIGRATING=yes nothing here applies.
#
# A server has one masteruser and one masterauth. The head replicates the source and needs the
# source's login, from that server's own Secret (mounted at SOURCE_LOGIN_DIR: the file password
# and, optionally, username; without username, the password alone: the source's default user,
# requirepass). Every other member replicates the head and needs the group's own replication
# login. So whoever points a node at a new target sets that target's login first (keeper.sh),
# start.sh writes it into the runtime config, and the reloader, applying a changed password, sets
# the one for the target the node has now.
#
# Parameters, from the container's environment (components/render/pod_scripts.py lists them):
#   MIGRATING          yes in a group that replicates a migration source
#   UPSTREAM_FILE      the source, "<host> <port>"
#   SOURCE_LOGIN_DIR   the source's credentials Secret; empty: the source takes no login
#   REPLICATION_USER   the group's own replication user (valkey.conf's masteruser)
#   MASTERAUTH_FILE    its password, raw
#   MIGRATION_FILE     on the data volume (start.sh and keeper.sh): what the volume's data is, below
# A password is read from its file into the shell, then handed to valkey-cli on stdin (-x) or
# written into the pod's runtime config file; never into an argument. As the keyspace copy does,
# the trailing newlines of a file (a Secret made from a file often has one) are not part of it.

# What a node of a group that was cut over replicates when nothing else is there to follow: never
# the source again. Under .invalid, it resolves nowhere; unlike FENCE_HOST, the keeper moves a node
# off it as soon as a member is promoted.
# shellcheck disable=SC2034 # read by the scripts that source this file
CUT_OVER_HOST=cut-over.invalid

migrating() {
  [ "${MIGRATING:-no}" = yes ]
}

# is_source "<host> <port>": succeeds when that is the migration source.
is_source() {
  migrating && [ "$1" = "$(cat "${UPSTREAM_FILE:?}")" ]
}

# login_for "<host> <port>": sets LOGIN_USER and LOGIN_PASSWORD for replicating that target;
# fails when a password file cannot be read.
login_for() {
  LOGIN_USER=""
  LOGIN_PASSWORD=""
  if is_source "$1"; then
    [ -n "${SOURCE_LOGIN_DIR:-}" ] || return 0
    if [ -f "$SOURCE_LOGIN_DIR/username" ]; then
      LOGIN_USER="$(cat "$SOURCE_LOGIN_DIR/username")" || return 1
    fi
    LOGIN_PASSWORD="$(cat "$SOURCE_LOGIN_DIR/password")" || return 1
  else
    LOGIN_USER="${REPLICATION_USER:?}"
    LOGIN_PASSWORD="$(cat "${MASTERAUTH_FILE:?}")" || return 1
  fi
}

# quoted_hex VALUE: VALUE as a double-quoted config string, every byte as \xNN, which the config
# parser decodes: no quote, backslash or space in a password can end the value early.
quoted_hex() {
  printf '"%s"' "$(printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n' | sed 's/../\\x&/g')"
}

# login_conf "<host> <port>": the config lines of that target's login, for the end of the
# runtime config (after the includes: the last line of a setting wins).
login_conf() {
  login_for "$1" || return 1
  echo "masteruser $(quoted_hex "$LOGIN_USER")"
  echo "masterauth $(quoted_hex "$LOGIN_PASSWORD")"
}

# set_login "<host> <port>" CLI...: CONFIG SET masteruser and masterauth, in one command, for that
# target; CLI... runs valkey-cli as a user that may CONFIG SET. The password goes on stdin (-x).
set_login() {
  login_target="$1"
  shift
  login_for "$login_target" || return 1
  [ "$(printf '%s' "$LOGIN_PASSWORD" | "$@" -x CONFIG SET masteruser "$LOGIN_USER" masterauth)" = OK ]
}

# The data volume's record (MIGRATION_FILE), which decides whether its node may ever replicate the
# source: "source" while its data is the source's copy (written before the server's first start on
# an empty volume); "cut-over" once a member of the group has been promoted (keeper.sh writes it):
# from then on the group's data has writes the source lacks, and a copy from the source, should it
# take writes again (a restart undoes the cut-over's fence), would replace them. No record on a
# volume that holds data: the instance's own, from before the migration.
migration_state() {
  if [ -f "${MIGRATION_FILE:?}" ]; then
    head -n 1 "$MIGRATION_FILE"
  else
    echo none
  fi
}

# may_follow_source: the volume's data is the source's copy, and nothing was promoted since.
may_follow_source() {
  [ "$(migration_state)" = source ]
}

# record_cut_over: a member was promoted; this volume's node never replicates the source again.
record_cut_over() {
  [ "$(migration_state)" = source ] || return 0
  echo cut-over >"$MIGRATION_FILE.tmp" && mv "$MIGRATION_FILE.tmp" "$MIGRATION_FILE" && sync
}
