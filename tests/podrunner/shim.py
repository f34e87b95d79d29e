"""The per-container process helper (what runc/containerd-shim do for a kubelet). Run as a script by
the runner, as root, standard library only (it must not import the package):

    python -I -S shim.py run SPEC LIFELINE_FD PID_FD   start a container, wait for it, exit with its status
    python -I -S shim.py exec SPEC TARGET_PID ARGV...  run ARGV inside the container whose init is TARGET_PID

``run`` enters the pod's network namespace, then forks the container's init into new PID, mount, UTS
and IPC namespaces. The child builds the root filesystem in its private mount namespace (nothing is
mounted on the host: the mounts vanish with the container), pivots into it, drops to the container's
user and execs the command. The parent reports the child's host pid on PID_FD, kills it when the
runner goes away (LIFELINE_FD reaches EOF) and exits with the child's exit code (128+signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
SYS_PIVOT_ROOT = 155  # x86_64
SETUP_FAILED = 125

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _b(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")


def bind(source: str, target: str, read_only: bool) -> None:
    mount(source, target, None, MS_BIND)
    if read_only:
        remount_ro(target)


def remount_ro(target: str, flags: int = 0) -> None:
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)


def prctl(option: int, arg: int) -> None:
    _check(libc.prctl(option, arg, 0, 0, 0), f"prctl {option}")


def _makedirs(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        os.chown(path, uid, gid)


def _touch(path: str) -> None:
    _makedirs(os.path.dirname(path))
    with open(path, "a"):
        pass


def build_rootfs(spec: dict[str, Any]) -> None:
    """Mounts everything under spec["rootfs"] (in this process's new mount namespace) and pivots into it."""
    root, scratch = spec["rootfs"], spec["scratch"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64m")
    mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700")
    for top in ("usr", "etc"):  # the image: host /usr and /etc, copy-on-write into this container only
        upper, work = f"{scratch}/{top}", f"{scratch}/{top}.work"
        for d in (upper, work, f"{root}/{top}"):
            os.mkdir(d)
        mount("overlay", f"{root}/{top}", "overlay", MS_NOSUID, f"lowerdir=/{top},upperdir={upper},workdir={work}")
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        if os.path.islink(f"/{name}"):
            os.symlink(os.readlink(f"/{name}"), f"{root}/{name}")
    for name in ("proc", "sys", "dev", "run", "var", "home", "root", "mnt", "opt", "srv"):
        _makedirs(f"{root}/{name}", 0o700 if name == "root" else 0o755)
    for d in spec["dirs"]:
        _makedirs(root + d["path"], d["mode"], d["uid"], d["gid"])
    for f in spec["files"]:
        _touch(root + f["path"])
        with open(root + f["path"], "w") as out:
            out.write(f["content"])
        os.chmod(root + f["path"], f["mode"])

    dev = f"{root}/dev"
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k")
    for node in ("null", "zero", "full", "random", "urandom", "tty"):
        _touch(f"{dev}/{node}")
        bind(f"/dev/{node}", f"{dev}/{node}", False)
    os.mkdir(f"{dev}/shm")
    mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{name}")
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("sysfs", f"{root}/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

    # The image's own binaries; host /usr/local is not part of the image.
    mount("tmpfs", f"{root}/usr/local", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64k")
    for b in spec["binds"]:
        target = root + b["target"]
        if os.path.isdir(b["source"]):
            _makedirs(target)
        else:
            _touch(target)
        bind(b["source"], target, b["read_only"])
    _makedirs(root + spec["process"]["cwd"])  # runc creates a missing working directory

    if spec["read_only_root"]:
        for target in (root, f"{root}/usr", f"{root}/etc", f"{root}/usr/local"):
            remount_ro(target, MS_NOSUID | (0 if target.endswith("/usr") or target.endswith("/etc") else MS_NODEV))
    os.chdir(root)
    _check(libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def become(process: dict[str, Any], last_cap: int) -> None:
    """The container's identity: bounding set, groups, uid/gid, no_new_privs."""
    os.chdir(process["cwd"])
    keep = set(process["capabilities"])
    for cap in range(last_cap + 1):
        if cap not in keep:
            prctl(PR_CAPBSET_DROP, cap)
    os.setgroups(process["groups"])
    os.setresgid(process["gid"], process["gid"], process["gid"])
    os.setresuid(process["uid"], process["uid"], process["uid"])  # clears the permitted set unless uid 0
    if process["no_new_privs"]:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
    os.umask(0o022)


def _lookup(name: str, path: str) -> str:
    """execvp's PATH search, without the lazy imports os.execvpe needs (gone after pivot_root)."""
    if "/" in name:
        return name
    for directory in path.split(":"):
        candidate = f"{directory or '.'}/{name}"
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(name)


def execute(process: dict[str, Any], argv: list[str]) -> None:
    env = dict(process["env"])
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; a runtime execs with defaults
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execve(_lookup(argv[0], env.get("PATH", "/usr/local/bin:/usr/bin:/bin")), argv, env)
    except FileNotFoundError:
        _say(f'exec: "{argv[0]}": executable file not found in $PATH')
        os._exit(127)
    except OSError as exc:
        _say(f'exec: "{argv[0]}": {exc}')
        os._exit(126)


def _die_with_parent() -> None:
    # (getppid() cannot check for a race here: in its new PID namespace the child's parent is 0.)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _say(message: str) -> None:
    os.write(2, f"podrunner: {message}\n".encode())  # unbuffered: os._exit follows


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def run(spec: dict[str, Any], lifeline: int, pid_fd: int) -> int:
    os.set_inheritable(lifeline, False)
    os.set_inheritable(pid_fd, False)
    last_cap = _last_cap()
    netns = os.open(spec["netns"], os.O_RDONLY)
    _check(libc.setns(netns, CLONE_NEWNET), "setns net")
    os.close(netns)
    _check(libc.unshare(CLONE_NEWPID), "unshare pid")
    exec_read, exec_write = os.pipe()  # close-on-exec: EOF once the container's command runs
    child = os.fork()
    if child == 0:
        os.close(exec_read)
        try:
            _die_with_parent()
            _check(libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC), "unshare")
            socket.sethostname(spec["hostname"])
            build_rootfs(spec)
            become(spec["process"], last_cap)
            _die_with_parent()  # credential changes reset the parent-death signal
        except Exception as exc:  # noqa: BLE001 - reported in the container log, like a runtime error
            _say(f"container setup failed: {exc}")
            os._exit(SETUP_FAILED)
        execute(spec["process"], spec["process"]["argv"])
    os.close(exec_write)
    os.read(exec_read, 1)  # the runner learns the pid once the command runs (or setup failed)
    os.close(exec_read)
    os.write(pid_fd, f"{child}\n".encode())
    os.close(pid_fd)
    child_fd = os.pidfd_open(child)
    ready, _, _ = select.select([child_fd, lifeline], [], [])
    if lifeline in ready and child_fd not in ready:
        os.kill(child, signal.SIGKILL)  # the runner is gone: take the container (its PID namespace) down
    _, status = os.waitpid(child, 0)
    return _exit_code(status)


def exec_in(spec: dict[str, Any], target: int, argv: list[str]) -> int:
    last_cap = _last_cap()
    fds = [(os.open(f"/proc/{target}/ns/{ns}", os.O_RDONLY), ns) for ns in ("ipc", "uts", "net", "pid", "mnt")]
    for fd, ns in fds:
        _check(libc.setns(fd, 0), f"setns {ns}")
        os.close(fd)
    child = os.fork()  # joins the container's PID namespace
    if child == 0:
        os.setpgid(0, 0)
        try:
            become(spec["process"], last_cap)
        except Exception as exc:  # noqa: BLE001
            _say(f"exec setup failed: {exc}")
            os._exit(SETUP_FAILED)
        execute(spec["process"], argv)
    with contextlib.suppress(OSError):
        os.setpgid(child, child)

    def kill_command(signum: int, frame: object) -> None:
        # A probe past its timeout: kill what runs in the container, then reap it here. (Killed
        # together with this process, the command would be re-parented to the host's init and,
        # unreaped, hold its PID namespace open.)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signal.SIGKILL)

    signal.signal(signal.SIGTERM, kill_command)
    _, status = os.waitpid(child, 0)
    return _exit_code(status)


def main(argv: list[str]) -> int:
    mode, spec_path = argv[1], argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    if mode == "run":
        return run(spec, int(argv[3]), int(argv[4]))
    if mode == "exec":
        return exec_in(spec, int(argv[3]), argv[4:])
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
