"""Copy every key of a Redis-protocol server into this program's Valkey, tracking the writes made
meanwhile, then verify it.

    python -m ops.keyspace_copy --source HOST:PORT --target HOST:PORT [--follow]
        [--source-tls [--source-ca FILE]] [--target-tls [--target-ca FILE]]
        [--source-credentials DIR] [--target-credentials DIR] [--batch N] [--sample N]
        [--no-track-writes] [--notifications-configured] [--start-over] [--metrics-port PORT]

Logins never come from arguments: a ``--*-credentials`` directory holds the files ``username``
(optional: without it, the password alone, as a server's default user) and ``password``, as a
mounted Kubernetes Secret does; else ``SOURCE_USERNAME``/``SOURCE_PASSWORD`` and
``TARGET_USERNAME``/``TARGET_PASSWORD`` (the target's user defaults to ``admin``, whose password
is the instance's ``<instance>-admin-credentials`` Secret).

Without ``--follow`` it copies, copies again what changed, verifies and exits: for a copy while
the writers are stopped. With ``--follow`` it keeps the target in step until SIGUSR1, the
cut-over's cue once the writers have stopped (docs/migration.md), then copies what is left and
verifies; without ``--follow`` a SIGUSR1 only gets a log line saying it has no effect. SIGTERM or
SIGINT stop it at any step without verifying. Exit status 0: verified; 1: stopped with an error
(the message says what to do); 2: the verification found differences; 3: interrupted, a
connection lost, the target restarted or became a replica (a rerun resumes where it can).
"""

from __future__ import annotations

import argparse
import http.server
import signal
import sys
import threading
from collections.abc import Sequence

import valkey

from .arguments import host_port, login
from .copier import Copier, Options
from .endpoint import Endpoint, MigrationError, Resumable, refusal


def _serve_metrics(port: int, copier: Copier) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = copier.progress.metrics().encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:  # scrapes are not news
            return

    server = http.server.ThreadingHTTPServer(("", port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.keyspace_copy", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--source", type=host_port, required=True, help="the server to copy from, HOST:PORT")
    parser.add_argument("--target", type=host_port, required=True, help="the instance's primary, HOST:PORT")
    for end in ("source", "target"):
        parser.add_argument(f"--{end}-tls", action="store_true", help=f"connect to the {end} over TLS")
        parser.add_argument(f"--{end}-ca", help=f"CA bundle that signs the {end}'s certificate")
        parser.add_argument(f"--{end}-credentials", help="directory with the files username and password")
    parser.add_argument("--follow", action="store_true", help="keep copying changes until SIGTERM (a cut-over)")
    parser.add_argument("--no-track-writes", action="store_true", help="the writers are stopped for the whole copy")
    parser.add_argument(
        "--notifications-configured",
        action="store_true",
        help="the source's notify-keyspace-events holds K and A already (it refuses CONFIG)",
    )
    parser.add_argument(
        "--start-over", action="store_true", help="empty a target holding an unfinished copy that cannot resume"
    )
    parser.add_argument("--batch", type=int, default=Options.batch, help="keys per SCAN and pipeline")
    parser.add_argument("--sample", type=int, default=Options.sample, help="keys whose values are compared")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 100_000:
        parser.error("--batch: 1 to 100000 keys")
    if args.follow and args.no_track_writes:
        parser.error("--follow needs write tracking")
    ends = {}
    for end, default_user in (("source", None), ("target", "admin")):
        username, password = login(getattr(args, f"{end}_credentials"), end.upper(), default_user)
        host, port = getattr(args, end)
        ends[end] = Endpoint(
            end, host, port, username, password, tls=getattr(args, f"{end}_tls"), ca_file=getattr(args, f"{end}_ca")
        )
    options = Options(
        batch=args.batch,
        track_writes=not args.no_track_writes,
        follow=args.follow,
        sample=args.sample,
        start_over=args.start_over,
        notifications_configured=args.notifications_configured,
    )
    copier = Copier(ends["source"], ends["target"], options, log=lambda line: print(line, flush=True))
    # SIGUSR1 is the cut-over's cue alone: a SIGTERM (an eviction, a drain, a replaced Job) only stops.
    cutover, interrupt = threading.Event(), threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: cutover.set())
    signal.signal(signal.SIGTERM, lambda *_: interrupt.set())
    signal.signal(signal.SIGINT, lambda *_: interrupt.set())
    if args.metrics_port is not None:
        _serve_metrics(args.metrics_port, copier)
    try:
        report = copier.run(cutover, interrupt)
    except MigrationError as error:
        print(f"keyspace-copy: failed: {error}", file=sys.stderr, flush=True)
        return 1
    except Resumable as error:
        # Interrupted, or an end restarted, failed over or was lost: worth a retry, which resumes
        # where it can (the Job retries exit codes other than 1 and 2).
        print(f"keyspace-copy: {error}", file=sys.stderr, flush=True)
        return 3
    except valkey.ResponseError as error:  # the copier turns every one into the above: a last net
        problem = refusal(error)
        print(f"keyspace-copy: failed: {problem}", file=sys.stderr, flush=True)
        return 3 if isinstance(problem, Resumable) else 1
    except (valkey.ConnectionError, valkey.TimeoutError, OSError) as error:
        print(f"keyspace-copy: connection lost: {error}", file=sys.stderr, flush=True)
        return 3
    return 0 if report.verification.ok else 2


if __name__ == "__main__":
    sys.exit(main())
