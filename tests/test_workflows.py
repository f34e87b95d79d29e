"""The GitHub workflows (.github/workflows/preview.yml, deploy.yml) are checked against what they
drive: inputs pulumi/actions really declares, stacks that have stack files, the deploy order
region 1 -> region 2, environments, minimal permissions, and secrets referenced, never inlined.
actionlint (run by .ci/run) checks the workflow syntax; it does not know pulumi/actions' inputs.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from harness import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
PULUMI_ACTION = "pulumi/actions"
PULUMI_ACTION_MAJOR = "v6"

# Inputs declared by pulumi/actions' action.yml, v6 line (runs.using node20; `refresh` runs the
# command with --refresh, the v6 change), read from github.com/pulumi/actions/blob/
# 4ddd4329226d5f7fdca0bc1fe3a0a659f4de25fe/action.yml. Later v6 releases only add inputs
# (the README of that line also documents log-verbosity, log-flow, debug, omit-stdout,
# continue-on-error); this list keeps to the ones action.yml declares at that commit.
PULUMI_ACTION_INPUTS = frozenset(
    {
        "command",
        "stack-name",
        "pulumi-version",
        "pulumi-version-file",
        "work-dir",
        "comment-on-pr",
        "comment-on-pr-number",
        "comment-on-summary",
        "github-token",
        "cloud-url",
        "secrets-provider",
        "parallel",
        "message",
        "config-map",
        "expect-no-changes",
        "diff",
        "replace",
        "target",
        "target-dependents",
        "policyPacks",
        "policyPackConfigs",
        "refresh",
        "upsert",
        "remove",
        "edit-pr-comment",
        "color",
        "exclude-protected",
        "plan",
        "suppress-outputs",
        "suppress-progress",
        "always-include-summary",
    }
)
SECRET_NAMES = re.compile(r"PASSPHRASE|SECRET|TOKEN|PASSWORD|ACCESS_KEY|KUBECONFIG", re.IGNORECASE)
EXPRESSION = re.compile(r"^\$\{\{\s*(.+?)\s*\}\}$")


def load(name: str) -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return workflow


def triggers(workflow: dict[Any, Any]) -> Any:
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean True.
    return workflow.get("on", workflow.get(True))


def pulumi_steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(job id, job, step) of every step that uses pulumi/actions."""
    return [
        (job_id, job, step)
        for job_id, job in workflow["jobs"].items()
        for step in job.get("steps", [])
        if str(step.get("uses", "")).split("@")[0] == PULUMI_ACTION
    ]


def stack_names(job: dict[str, Any], step: dict[str, Any]) -> list[str]:
    """The stacks a pulumi/actions step runs on: a literal, or the job's matrix values."""
    value = str(step["with"]["stack-name"])
    match = EXPRESSION.match(value)
    if match is None:
        return [value]
    reference = re.fullmatch(r"matrix\.([\w-]+)", match.group(1))
    assert reference, f"stack-name {value!r} is neither a literal nor a matrix value"
    values = job["strategy"]["matrix"][reference.group(1)]
    assert isinstance(values, list) and values
    return [str(v) for v in values]


def stack_job(workflow: dict[str, Any], stack: str) -> str:
    [job_id] = [j for j, job, step in pulumi_steps(workflow) if stack in stack_names(job, step)]
    return job_id


ALL = ["preview.yml", "deploy.yml"]


def undeclared_inputs(workflow: dict[str, Any]) -> list[str]:
    return [
        f"{job_id}: {key}"
        for job_id, _, step in pulumi_steps(workflow)
        for key in step.get("with", {})
        if key not in PULUMI_ACTION_INPUTS
    ]


@pytest.mark.parametrize("name", ALL)
def test_pulumi_action_inputs_are_declared_by_the_action(name: str) -> None:
    workflow = load(name)
    assert pulumi_steps(workflow), f"{name} runs no pulumi/actions step"
    assert undeclared_inputs(workflow) == []
    for job_id, _, step in pulumi_steps(workflow):
        ref = step["uses"].split("@", 1)[1]
        assert ref == PULUMI_ACTION_MAJOR or re.fullmatch(r"[0-9a-f]{40}", ref), f"{job_id}: pin {PULUMI_ACTION}@{ref}"
        assert {"command", "stack-name", "cloud-url", "policyPacks", "pulumi-version"} <= set(step["with"]), job_id


def test_a_misspelt_input_is_caught() -> None:
    workflow = load("preview.yml")
    [(_, _, step)] = pulumi_steps(workflow)
    step["with"]["policy-packs"] = step["with"].pop("policyPacks")
    step["with"]["stack"] = step["with"].pop("stack-name")
    assert undeclared_inputs(workflow) == ["preview: policy-packs", "preview: stack"]


@pytest.mark.parametrize("name", ALL)
def test_stack_names_have_stack_files(name: str) -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]
    found = set()
    for job_id, job, step in pulumi_steps(load(name)):
        for stack in stack_names(job, step):
            organization, stack_project, short = stack.split("/")
            assert (organization, stack_project) == ("organization", project), f"{job_id}: {stack}"
            assert (ROOT / f"Pulumi.{short}.yaml").is_file(), f"{job_id}: no Pulumi.{short}.yaml for {stack}"
            found.add(short)
    assert found == {"region1", "region2"}


@pytest.mark.parametrize("name", ALL)
def test_policy_pack_and_cli_are_the_repository_s(name: str) -> None:
    sdk = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), flags=re.MULTILINE)
    assert sdk is not None
    workflow = load(name)
    for job_id, job, step in pulumi_steps(workflow):
        assert step["with"]["pulumi-version"] == sdk.group(1), f"{job_id}: the CLI must match the SDK"
        pack = str(step["with"]["policyPacks"]).replace("${{ github.workspace }}/", "")
        assert (ROOT / pack / "PulumiPolicy.yaml").is_file(), f"{job_id}: policyPacks {pack!r}"
        assert step["with"]["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}", job_id
        installs = " ".join(s.get("run", "") for s in job["steps"])
        assert f"-r {pack}/requirements.txt" in installs, f"{job_id}: the pack's dependencies are not installed"
        assert "-r requirements.txt" in installs, f"{job_id}: the program's dependencies are not installed"


def test_preview_runs_on_pull_requests_after_the_tests_and_comments() -> None:
    workflow = load("preview.yml")
    assert set(triggers(workflow)) == {"pull_request"}
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}
    for job_id, job, step in pulumi_steps(workflow):
        assert step["with"]["command"] == "preview"
        assert step["with"]["comment-on-pr"] is True
        assert job["needs"] == "offline-tests", job_id
    assert "bash .ci/run" in [s.get("run") for s in workflow["jobs"]["offline-tests"]["steps"]]


def test_deploy_runs_region1_then_region2_behind_environments() -> None:
    workflow = load("deploy.yml")
    assert triggers(workflow) == {"push": {"branches": ["main"]}}
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["cancel-in-progress"] is False
    region1 = stack_job(workflow, "organization/valkey/region1")
    region2 = stack_job(workflow, "organization/valkey/region2")
    needs = workflow["jobs"][region2]["needs"]
    assert region1 in ([needs] if isinstance(needs, str) else needs)
    assert workflow["jobs"][region1]["needs"] == "offline-tests"
    environments = []
    for job_id, job, step in pulumi_steps(workflow):
        assert step["with"]["command"] == "up"
        environment = job.get("environment")
        assert environment, f"{job_id} deploys without an environment (required reviewers)"
        environments.append(environment["name"] if isinstance(environment, dict) else environment)
    assert sorted(environments) == ["production-region1", "production-region2"]


def secret_values(workflow: dict[str, Any]) -> dict[str, str]:
    """``job: key`` -> value of every env or with entry whose name says it holds a credential."""
    found = {}
    for job_id, job in workflow["jobs"].items():
        blocks = [job.get("env", {})] + [s.get(k, {}) for s in job.get("steps", []) for k in ("env", "with")]
        for block in blocks:
            for key, value in block.items():
                if SECRET_NAMES.search(key) and key != "github-token":
                    found[f"{job_id}: {key}"] = str(value)
    return found


def inlined(workflow: dict[str, Any]) -> list[str]:
    return [k for k, v in secret_values(workflow).items() if not re.fullmatch(r"\$\{\{ .*secrets\.\w+.* \}\}", v)]


@pytest.mark.parametrize("name", ALL)
def test_secrets_are_referenced_not_inlined(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|-----BEGIN|client-key-data:|token: [A-Za-z0-9]", text)
    workflow = load(name)
    assert len(secret_values(workflow)) >= 4, "the backend and kube credentials come from secrets"
    assert inlined(workflow) == []
    assert "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}" in text


def test_an_inlined_passphrase_is_caught() -> None:
    workflow = load("deploy.yml")
    [(_, _, step)] = [s for s in pulumi_steps(workflow) if s[0] == "region2"]
    step["env"]["PULUMI_CONFIG_PASSPHRASE"] = "correct horse battery staple"
    assert inlined(workflow) == ["region2: PULUMI_CONFIG_PASSPHRASE"]


def test_every_workflow_that_runs_pulumi_is_checked() -> None:
    running = sorted(p.name for p in WORKFLOWS.glob("*.y*ml") if pulumi_steps(yaml.safe_load(p.read_text())))
    assert running == sorted(ALL)
