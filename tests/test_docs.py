"""The documentation holds together: every relative link in README.md and docs/*.md reaches a file
and, when it names an ``#anchor``, a heading of that file; the README indexes every docs/ page; the
configuration reference in docs/configuration.md is what the models' docstrings say.

A page split or a renamed heading breaks links silently on GitHub; here it fails a test instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import pytest
from harness import ROOT
from markdown_anchors import FENCE, anchors, github_anchor
from pydantic import AfterValidator, BaseModel

from components.config.models import StackConfig
from components.render.acl import Passwords, server_users
from offline import docs

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

CODE_SPAN = re.compile(r"(`+).+?\1", flags=re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(markdown: str) -> str:
    """The text without code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {shown(file)}")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{target}: no heading #{anchor} in {shown(file)}")
    return broken


def test_the_anchor_rules_are_githubs() -> None:
    assert github_anchor("What `pulumi up` does, per operation") == "what-pulumi-up-does-per-operation"
    assert github_anchor("Disaster recovery: what the drills measured") == "disaster-recovery-what-the-drills-measured"
    assert github_anchor("Alert: ValkeyDown") == "alert-valkeydown"
    assert github_anchor("Instance keys (`instances.<name>.…`)") == "instance-keys-instancesname"
    assert github_anchor("snake_case keys") == "snake_case-keys"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves_to_a_file_and_heading(page: Path) -> None:
    assert broken_links(page) == []


def test_the_link_check_sees_links_and_ignores_code(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## A section\n\nSee [it](#a-section), [that](#nowhere), [file](other.md) and [web](https://x.y).\n"
        "`[not](a-link.md)`\n\n```bash\necho '[not](either.md)'\n```\n"
    )
    assert broken_links(page) == [f"#nowhere: no heading #nowhere in {page}", f"other.md: no file {tmp_path}/other.md"]


def test_the_readme_indexes_every_docs_page() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in relative_links(ROOT / "README.md")}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_the_configuration_reference_is_generated_from_the_current_models() -> None:
    page = docs.PAGE.read_text()
    assert docs.page_with_reference(page) == page, "stale configuration reference: run python -m offline.docs"


def test_a_changed_docstring_makes_the_reference_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    page = docs.PAGE.read_text()
    monkeypatch.setattr(StackConfig.model_fields["role"], "description", "Changed without regenerating.")
    assert "| Changed without regenerating. |" in docs.page_with_reference(page) != page


def test_the_reference_covers_nested_keys_with_their_bounds_and_defaults() -> None:
    rows = {row.split(" | ")[0].strip("| `"): row for row in docs.configuration_reference().splitlines()[2:]}
    assert "| size, 1Mi–1Ti | `2Gi` |" in rows["instances.<name>.maxmemory"]
    assert "| duration, more than 10s, up to 7d | `30s` |" in rows["monitoring.thresholds.replicationLagSeconds"]
    assert "| `Issuer` or `ClusterIssuer` | `ClusterIssuer` |" in rows["tls.issuer.kind"]
    assert "| DNS label | required |" in rows["networkPolicy.clients[].namespace"]
    assert "| whole number, 1–10000 | `1` |" in rows["passwordRotation.metrics.generation"]
    assert "`client\\|kill`" in rows["deniedCommands"]  # a bare | would end the table cell
    assert "default `<instance>.<region>.<externalDomain>`." in rows["instances.<name>.externalHost"]


def test_a_validator_the_generator_cannot_describe_stops_it() -> None:
    def _new_type(value: str) -> str:
        return value

    class Odd(BaseModel):
        odd: Annotated[str, AfterValidator(_new_type)] = ""

    (key,) = docs.config_keys(Odd)
    with pytest.raises(ValueError, match="cannot describe"):
        docs.accepted(key)


def test_the_users_table_names_exactly_the_acl_users() -> None:
    """docs/design.md's users table and render/acl.py (the one home of the users) agree."""
    passwords = Passwords(client=("c",), replication=("r",), probe="p", reloader="l", admin="a", metrics=("m",))
    users = {user.name for user in server_users(passwords)}
    text = (ROOT / "docs" / "design.md").read_text()
    table = text[text.index("**Users**") :].split("\n\n")[1]
    documented = set(re.findall(r"^\| `([a-z]+)` \|", table, flags=re.MULTILINE))
    assert documented == users
