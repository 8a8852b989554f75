"""`owner/name@base` entries: provisioning/freshness.py, plugins/github_prs.py and plugins/docs_freshness.py accept
exactly the same set (git's branch-name rules, at most 255 characters), so nothing passes provisioning and then
fails in a plugin. Each plugin is one self-contained file, so the check is copied: the copies must not drift."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from provisioning.freshness import FreshnessConfigError, load_freshness
from provisioning.settings import DEFAULT_PLUGIN_DIR

ROOT = Path(__file__).resolve().parents[2]

ACCEPTED = ["main", "master", "feature/x", "release-1.2", "v1.0", "a@b", "user@host/topic", "a" * 255, "x.lockx",
            "under_score", "a/b/c", "@x", "x@", "Ünïcode"]
REFUSED = ["a" * 256, "", "ma in", "tab\tbranch", "a..b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b", "a@{1}",
           "@", "a//b", "/a", "a/", "-a", ".a", "a/.b", "a.lock", "a.lock/b", "a.", "ctl\x01", "del\x7f",
           "nl\n", "nbsp\u00a0x"]


def _plugin(name: str):
    spec = importlib.util.spec_from_file_location(f"_test_repo_at_base_{name[:-3]}", ROOT / "plugins" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GITHUB_PRS = _plugin("github_prs.py")
DOCS_FRESHNESS = _plugin("docs_freshness.py")


def _provisioning_accepts(tmp_path: Path, entry: str) -> bool:
    f = tmp_path / "freshness.toml"
    f.write_text(f'[[source]]\nkapa_source = "Docs"\nrepos = [{json.dumps(entry)}]\n', encoding="utf-8")
    try:
        load_freshness(f, {}, DEFAULT_PLUGIN_DIR)
    except FreshnessConfigError as exc:
        assert "is not in owner/name@base form" in str(exc), exc
        return False
    return True


def _github_prs_accepts(entry: str) -> bool:
    try:
        GITHUB_PRS._parse_repos(entry)
    except GITHUB_PRS.ConfigError as exc:
        assert "invalid repos entry" in str(exc), exc
        return False
    return GITHUB_PRS._branch_ok(entry.partition("@")[2])  # the check _load_config makes of each base


def _docs_freshness_accepts(entry: str) -> bool:
    try:
        DOCS_FRESHNESS._parse_sources(json.dumps([{"kapa_source": "Docs", "repos": [entry]}]))
    except DOCS_FRESHNESS.ConfigError as exc:
        assert "is not owner/name@base" in str(exc), exc
        return False
    return True


@pytest.mark.parametrize("base, expected", [(b, True) for b in ACCEPTED] + [(b, False) for b in REFUSED])
def test_provisioning_and_both_plugins_accept_the_same_entries(tmp_path: Path, base: str, expected: bool):
    entry = f"influxdata/docs-v2@{base}"
    if any(ch.isspace() for ch in entry):
        # github_prs's repos argument is whitespace-separated: a branch with a space is two entries there
        got = (_provisioning_accepts(tmp_path, entry), _docs_freshness_accepts(entry), GITHUB_PRS._branch_ok(base))
    else:
        got = (_provisioning_accepts(tmp_path, entry), _docs_freshness_accepts(entry), _github_prs_accepts(entry))
    assert got == (expected, expected, expected), (base, got)


@pytest.mark.parametrize("entry", ["influxdata/docs-v2", "docs-v2@main", "a/b/c@main", "in flux/docs@main",
                                   "o/r@", "@main", "o/r"])
def test_entries_not_in_owner_name_at_base_form_are_refused_everywhere(tmp_path: Path, entry: str):
    assert not _provisioning_accepts(tmp_path, entry)
    assert not _docs_freshness_accepts(entry)
    if " " not in entry:
        assert not _github_prs_accepts(entry)


def test_repo_at_base_check_is_the_same_in_both_plugins():
    pattern = re.compile(r"\n# owner/name@base: the same block.*?\n    return match.group\(1\), match.group\(2\)\n", re.S)
    copies = {name: pattern.search((ROOT / "plugins" / name).read_text(encoding="utf-8"))
              for name in ("github_prs.py", "docs_freshness.py")}
    assert all(copies.values()), copies
    assert len({found.group(0) for found in copies.values()}) == 1, "the copies of the owner/name@base check differ"
