"""One container's processes: started through the shim, signalled by host pid, exec'd into."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PodStartError

SHIM = str(Path(__file__).with_name("shim.py"))


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class ContainerProcess:
    """A running (or exited) container: the shim's Popen and the host pid of the container's PID 1."""

    def __init__(self, name: str, spec: dict[str, Any], spec_path: Path, log_path: Path, lifeline: int):
        self.name = name
        self.spec_path = spec_path
        spec_path.write_text(json.dumps(spec))
        spec_path.chmod(0o600)
        self.started_at = time.monotonic()
        read_pid, write_pid = os.pipe()
        with open(log_path, "ab") as log:
            log.write(f"--- podrunner: starting container {name} at {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                [sys.executable, "-I", "-S", SHIM, "run", str(spec_path), str(lifeline), str(write_pid)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(lifeline, write_pid),
                start_new_session=True,
            )
        os.close(write_pid)
        try:
            self.pid = self._read_pid(read_pid)
        finally:
            os.close(read_pid)

    def _read_pid(self, fd: int, timeout: float = 10.0) -> int:
        ready, _, _ = select.select([fd], [], [], timeout)
        data = os.read(fd, 64) if ready else b""
        if not data:
            self.popen.kill()
            self.popen.wait()
            raise PodStartError(f"container {self.name}: the shim did not start it (exit {self.popen.returncode})")
        return int(data)

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def exit_code(self) -> int | None:
        return self.popen.poll()

    def signal(self, sig: int) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout: float | None) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> int:
        """SIGKILL the container's PID 1: the kernel then kills everything in its PID namespace."""
        self.signal(signal.SIGKILL)
        code = self.wait(10.0)
        if code is None:
            self.popen.kill()
            code = self.popen.wait()
        return code

    def exec(self, argv: list[str], timeout: float | None, input: str | None = None) -> ExecResult:
        if not self.running:
            raise RuntimeError(f"container {self.name} is not running (exit code {self.exit_code})")
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", SHIM, "exec", str(self.spec_path), str(self.pid), *argv],
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
            return ExecResult(proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            proc.terminate()  # the shim kills the command's process group and reaps it
            try:
                out, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
            return ExecResult(proc.returncode, out, err, timed_out=True)
