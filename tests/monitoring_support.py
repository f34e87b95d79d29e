"""Processes for the monitoring end-to-end test: a TCP proxy that can stall or cut a replication
link, Debian's prometheus-redis-exporter run the way the sidecar runs, and a real Prometheus."""

from __future__ import annotations

import contextlib
import json
import select
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from valkey_process import free_port, stop_process, wait_for

from components.render import exporter

EXPORTER_BIN = shutil.which("prometheus-redis-exporter")
PROMETHEUS_BIN = shutil.which("prometheus")


class Proxy:
    """Forwards 127.0.0.1:<port> to an upstream port.

    ``pause()`` stops forwarding but keeps the connections open, as a network that drops packets
    does: neither end notices until its own timeout. ``cut()`` closes every connection and refuses
    new ones, as a network that resets them does. ``resume()`` heals both.
    """

    def __init__(self, upstream_port: int, rate: float | None = None):
        """``rate``: bytes a second each direction forwards at most, reading no faster, so the sender's
        own buffers fill (its kernel's send buffer too: the proxy's receive buffer is kept small)."""
        self.upstream_port = upstream_port
        self.rate = rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._forwarding = True
        self._refusing = False
        self._closed = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._refusing:
                client.close()
                continue
            try:
                upstream = socket.socket()
                if self.rate is not None:  # before connect: no window scaling beyond it
                    upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
                upstream.settimeout(5)
                upstream.connect(("127.0.0.1", self.upstream_port))
                upstream.settimeout(None)
            except OSError:
                upstream.close()
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self._closed:
                if not self._forwarding:
                    time.sleep(0.02)  # leave the bytes in the kernel's buffers, unread
                    continue
                if not select.select([src], [], [], 0.05)[0]:
                    continue
                data = src.recv(65536 if self.rate is None else 16384)
                if not data:
                    break
                dst.sendall(data)
                if self.rate is not None:
                    time.sleep(len(data) / self.rate)
        except (OSError, ValueError):
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def pause(self) -> None:
        self._forwarding = False

    def cut(self) -> None:
        self._refusing = True
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._forwarding = True

    def resume(self) -> None:
        self._refusing = False
        self._forwarding = True

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.cut()


def _stop(process: subprocess.Popen[bytes]) -> None:
    stop_process(process, timeout=5)


def http_get(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


class Exporter:
    """Debian's exporter with the sidecar's flags (those 1.45 knows) and its password file; with
    ``sentinel``, the Sentinel's exporter's flags and file, ``valkey_port`` being the Sentinel's."""

    def __init__(
        self, directory: Path, valkey_port: int, password: str, tls_ca: Path | None = None, *, sentinel: bool = False
    ):
        assert EXPORTER_BIN is not None
        directory.mkdir(parents=True, exist_ok=True)
        self.password_file = directory / "exporter-password.json"
        tls = tls_ca is not None
        render = exporter.sentinel_password_file if sentinel else exporter.password_file
        self.password_file.write_text(render(valkey_port, password, tls))
        self.password_file.chmod(0o440)
        self.port = free_port()
        ca = str(tls_ca) if tls_ca else None
        flag_set = exporter.sentinel_args if sentinel else exporter.args
        flags = flag_set(valkey_port, str(self.password_file), f"127.0.0.1:{self.port}", tls_ca_path=ca)
        self.argv = [EXPORTER_BIN, *flags]
        self.log = directory / "exporter.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: http_get(f"http://127.0.0.1:{self.port}/health") == "ok", what=f"exporter ({self.log})")

    def metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.port}/metrics", timeout=10)

    def cmdline(self) -> bytes:
        return Path(f"/proc/{self.process.pid}/cmdline").read_bytes()

    def stop(self) -> None:
        _stop(self.process)


def prometheus_relabel_configs(relabelings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A ServiceMonitor's relabelings (camelCase) as Prometheus ``relabel_configs`` (snake_case)."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return [{names.get(k, k): v for k, v in r.items()} for r in relabelings]


class Prometheus:
    """A Prometheus server scraping every second and evaluating ``rule_groups`` every second.

    ``jobs`` are ``(relabel_configs, [(exporter port, discovery labels)])``: the discovery labels
    stand in for the ``__meta_kubernetes_*`` labels Kubernetes discovery would attach.
    """

    def __init__(
        self,
        directory: Path,
        rule_groups: list[dict[str, Any]],
        jobs: list[tuple[list[dict[str, Any]], list[tuple[int, dict[str, str]]]]],
    ):
        assert PROMETHEUS_BIN is not None
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "rules.yml").write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
        scrape_configs = [
            {
                "job_name": f"valkey-pods-{i}",
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": labels} for port, labels in targets],
                "relabel_configs": relabel,
            }
            for i, (relabel, targets) in enumerate(jobs)
        ]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(directory / "rules.yml")],
            "scrape_configs": scrape_configs,
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "prometheus.log"
        argv = [
            PROMETHEUS_BIN,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: "Ready" in http_get(f"{self.url}/-/ready"), timeout=20, what=f"prometheus ({self.log})")

    def query(self, promql: str) -> list[dict[str, Any]]:
        body = json.loads(http_get(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"))
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def values(self, promql: str) -> list[tuple[dict[str, str], float]]:
        return [(r["metric"], float(r["value"][1])) for r in self.query(promql)]

    def firing(self, alertname: str) -> list[dict[str, str]]:
        body = json.loads(http_get(f"{self.url}/api/v1/alerts"))
        return [
            a["labels"]
            for a in body["data"]["alerts"]
            if a["labels"]["alertname"] == alertname and a["state"] == "firing"
        ]

    def stop(self) -> None:
        _stop(self.process)
