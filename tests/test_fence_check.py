"""``fence_check`` (components/render/scripts/fence.sh) on AOFs a real server wrote, both builds.

The drills (tests/test_fencing.py) show what a fenced node does; these pin down what fences one:
a volume with an AOF whose last file ends inside a command (a machine crash), and only that. A
complete AOF, one rewritten since (several files in the manifest), and one whose *earlier* file
was cut (which the check does not read: only the last file can end mid-command) are not fenced.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import valkey
from replies import info
from valkey_process import BUILDS, every_build, free_port, stop_process, wait_for

FENCE_SH = Path(__file__).parent.parent / "components" / "render" / "scripts" / "fence.sh"


def rewriting(client: valkey.Valkey) -> bool:
    persistence = info(client, "persistence")
    return bool(int(persistence["aof_rewrite_in_progress"]) or int(persistence["aof_rewrite_scheduled"]))


def write_an_aof(directory: Path, build: str, rewrites: int = 0, *, write_last: bool = True) -> Path:
    """A real server's AOF in ``directory``/appendonlydir, after a few writes (and ``rewrites``
    BGREWRITEAOFs, each starting a new incremental file; without ``write_last`` nothing is
    written after the last one: its incremental file is empty). Returns the manifest."""
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--appendonly", "yes"]
    server = subprocess.Popen(
        [str(BUILDS[build]), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        client = valkey.Valkey(port=port, socket_timeout=5)
        wait_for(client.ping, what="the server answering")
        for round_ in range(rewrites + 1):
            for i in range(20 if write_last or round_ < rewrites else 0):
                client.set(f"key:{round_}:{i}", "v" * 40)
            if round_ < rewrites:
                client.bgrewriteaof()
                wait_for(lambda: not rewriting(client), what="the rewrite")
    finally:
        stop_process(server)
    return directory / "appendonlydir" / "appendonly.aof.manifest"


def fence_check(
    directory: Path,
    build: str,
    manifest: Path,
    *,
    mode: str = "primary",
    data_expected: str = "yes",
    check_aof: bool = True,
    log: list[str] | None = None,
) -> tuple[str, str, bool]:
    """Runs ``fence_check <mode>`` as the pods do (sourced), with the marker's ``data_expected``
    and the image's valkey-check-aof on PATH (unless not ``check_aof``). Returns FENCED,
    FENCE_REASON and whether FENCE_FILE was written; appends what it logged to ``log``."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(exist_ok=True)
    link = bin_dir / "valkey-check-aof"
    if check_aof and not link.exists():
        link.symlink_to(BUILDS[build])
    if not check_aof and link.exists():
        link.unlink()
    fence_file = directory / "fenced"
    result = subprocess.run(
        ["sh", "-c", f'. "{FENCE_SH}"; fence_check {mode}; printf "%s|%s" "$FENCED" "$FENCE_REASON"'],
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "FENCE_FILE": str(fence_file),
            "FENCE_HOST": "fenced.invalid",
            "AOF_MANIFEST_FILE": str(manifest),
            "DATA_EXPECTED": data_expected,
        },
        capture_output=True,
        text=True,
        check=True,
    )
    if log is not None:
        log.append(result.stderr)
    fenced, _, reason = result.stdout.partition("|")
    return fenced, reason, fence_file.exists()


def incr_files(manifest: Path) -> list[Path]:
    words = manifest.read_text().split()
    return [manifest.parent / words[i - 4] for i, w in enumerate(words) if w == "i" and words[i - 1] == "type"]


def cut(path: Path, nbytes: int = 7) -> None:
    data = path.read_bytes()
    assert data.endswith(b"\r\n")
    path.write_bytes(data[:-nbytes])


@every_build
def test_a_complete_aof_is_not_fenced(tmp_path: Path, build: str) -> None:
    manifest = write_an_aof(tmp_path, build, rewrites=2)
    assert len(incr_files(manifest)) == 1  # a rewrite replaces the incremental files it covered
    assert fence_check(tmp_path, build, manifest) == ("no", "", False)


@every_build
def test_an_aof_whose_last_file_ends_inside_a_command_is_fenced(tmp_path: Path, build: str) -> None:
    manifest = write_an_aof(tmp_path, build, rewrites=1)
    last = incr_files(manifest)[-1]
    cut(last)
    fenced, reason, recorded = fence_check(tmp_path, build, manifest)
    assert (fenced, recorded) == ("yes", True)
    assert reason.startswith(f"the AOF's last file ({last.name}) does not end with a whole command"), reason
    assert (tmp_path / "fenced").read_text().splitlines()[0] == reason


@every_build
def test_only_the_last_incremental_file_is_read(tmp_path: Path, build: str) -> None:
    """A manifest naming two incremental files (a rewrite that failed leaves the older one listed):
    the check reads the last one only. The earlier one, cut here, is the server's to refuse (it
    stops: a cut file that is not the last is fatal), so nothing serves from it either."""
    manifest = write_an_aof(tmp_path, build)
    first = incr_files(manifest)[0]
    second = first.with_name(first.name.replace(".1.incr.", ".2.incr."))
    second.write_bytes(b"*1\r\n$4\r\nPING\r\n")
    manifest.write_text(manifest.read_text() + f"file {second.name} seq 2 type i\n")
    cut(first)
    assert fence_check(tmp_path, build, manifest) == ("no", "", False)
    cut(second, 3)
    fenced, reason, _ = fence_check(tmp_path, build, manifest)
    assert fenced == "yes" and reason.startswith(f"the AOF's last file ({second.name}) "), reason


@every_build
def test_an_image_without_valkey_check_aof_starts_unfenced_and_says_so(tmp_path: Path, build: str) -> None:
    """A custom image may lack the link: its nodes are not fenced at every start for that."""
    manifest = write_an_aof(tmp_path, build)
    cut(incr_files(manifest)[-1])
    log: list[str] = []
    assert fence_check(tmp_path, build, manifest, check_aof=False, log=log) == ("no", "", False)
    assert "fence: the image has no valkey-check-aof" in log[0], log


@every_build
def test_an_empty_last_file_after_a_rewrite_is_not_fenced(tmp_path: Path, build: str) -> None:
    """What every rewrite, every full sync of a replica and every first start leave."""
    manifest = write_an_aof(tmp_path, build, rewrites=1, write_last=False)
    assert incr_files(manifest)[-1].stat().st_size == 0
    assert fence_check(tmp_path, build, manifest) == ("no", "", False)


@every_build
def test_a_cut_aof_is_not_fenced_on_a_replica_nor_before_the_marker(tmp_path: Path, build: str) -> None:
    """A replica's copy is replaced by its primary's, or is the best there is while the primary is
    away; before the marker exists the instance has held no data (a first deployment)."""
    manifest = write_an_aof(tmp_path, build)
    cut(incr_files(manifest)[-1])
    assert fence_check(tmp_path, build, manifest, mode="replica") == ("no", "", False)
    assert fence_check(tmp_path, build, manifest, data_expected="") == ("no", "", False)
    assert fence_check(tmp_path, build, manifest)[0] == "yes"


@every_build
def test_a_check_that_cannot_run_is_logged_and_leaves_the_load_to_the_server(tmp_path: Path, build: str) -> None:
    """An unreadable or missing last file is no proof of a cut: the server's own load refuses
    what it cannot read, and nothing serves from it."""
    manifest = write_an_aof(tmp_path, build)
    incr_files(manifest)[-1].unlink()
    log: list[str] = []
    assert fence_check(tmp_path, build, manifest, log=log) == ("no", "", False)
    assert "fence: the AOF's last file (appendonly.aof.1.incr.aof) could not be checked: " in log[0], log
