"""Every `pulumi` command in the shell blocks of README.md and docs/*.md uses a subcommand and flags
the Pulumi CLI documents, so a newcomer can follow the runbooks without guessing.

The flags are copied from the CLI reference (https://www.pulumi.com/docs/iac/cli/commands/,
pages pulumi_login, pulumi_stack_init, pulumi_config_set, pulumi_config_rm, pulumi_preview,
pulumi_up, pulumi_state_unprotect, as of CLI 3.272), with the parents' persistent flags (--stack/-s on the config and
stack commands, --cwd/-C and --non-interactive everywhere).
"""

from __future__ import annotations

import re
import shlex

from harness import ROOT

GLOBAL = {"--cwd", "-C", "--non-interactive", "--color"}
DOCUMENTED: dict[str, set[str]] = {
    "login": {"--local", "--cloud-url", "-c", "--default-org", "--insecure"},
    "stack init": {"--secrets-provider", "--copy-config-from", "--no-select", "--teams", "--stack", "-s"},
    "config set": {"--path", "--secret", "--plaintext", "--type", "--stack", "-s", "--config-file"},
    "config rm": {"--path", "--stack", "-s", "--config-file"},
    "preview": {"--stack", "-s", "--policy-pack", "--policy-pack-config", "--diff", "--refresh", "--json", "--target"},
    "state unprotect": {"--all", "--stack", "-s", "--yes", "-y"},
    "up": {"--stack", "-s", "--policy-pack", "--policy-pack-config", "--diff", "--refresh", "--replace", "--yes",
           "-y", "--skip-preview", "--target", "--message", "-m"},
}  # fmt: skip


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
"""The pages a newcomer copies commands from."""


def pulumi_commands() -> list[list[str]]:
    blocks = [b for page in PAGES for b in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.DOTALL)]
    commands = []
    for block in blocks:
        for raw in block.replace("\\\n", " ").splitlines():
            line = raw.split(" #", 1)[0].strip()
            for part in re.split(r"&&|\|\|", line):
                words = shlex.split(part.strip())
                if words[:1] == ["pulumi"]:
                    commands.append(words[1:])
    return commands


def test_documented_pulumi_commands_use_documented_subcommands_and_flags() -> None:
    commands = pulumi_commands()
    assert len(commands) >= 15
    used = set()
    for words in commands:
        sub = " ".join(words[:2]) if " ".join(words[:2]) in DOCUMENTED else words[0]
        assert sub in DOCUMENTED, f"undocumented subcommand: pulumi {' '.join(words)}"
        used.add(sub)
        flags = {w.split("=", 1)[0] for w in words if w.startswith("-")}
        unknown = flags - DOCUMENTED[sub] - GLOBAL
        assert not unknown, f"pulumi {' '.join(words)}: flags {unknown} are not in the CLI reference"
    assert used >= {"login", "stack init", "config set", "config rm", "preview", "up"}


def test_stack_names_in_the_docs_have_stack_files() -> None:
    for words in pulumi_commands():
        for i, word in enumerate(words):
            if word in ("--stack", "-s") or (words[:2] == ["stack", "init"] and i == 2):
                name = words[i + 1] if word in ("--stack", "-s") else word
                stack = name.rsplit("/", 1)[-1]
                assert name.startswith("organization/valkey/"), name
                assert stack == "region3" or (ROOT / f"Pulumi.{stack}.yaml").exists(), name
