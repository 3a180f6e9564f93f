"""The catalogue: every pattern is complete, and slugs resolve (or fail helpfully)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox import patterns

CATALOGUE = patterns.catalogue()
REQUIRED_SECTIONS = ("## How it works", "## Run", "## Expected", "## Cleanup")


def test_there_are_patterns() -> None:
    assert CATALOGUE, "docs/patterns/*.json lists no pattern"


@pytest.mark.parametrize("pattern", CATALOGUE, ids=lambda p: p.slug)
def test_every_pattern_has_all_its_pieces(pattern: patterns.Pattern) -> None:
    root = patterns.ROOT
    name = pattern.module_name
    assert pattern.description and pattern.services and pattern.source
    assert callable(pattern.bootstrap.provision), f"bootstrap/{name}.py needs provision(aws)"
    assert callable(pattern.scenario.run), f"scenarios/{name}.py needs run(aws, res, scenario)"
    assert (root / "handlers" / name).is_dir() or list((root / "state_machines").glob(f"{name}*"))
    assert (root / "tests" / "unit" / f"test_{name}.py").is_file()
    page = pattern.page.read_text()
    for section in REQUIRED_SECTIONS:
        assert section in page, f"{pattern.page.name} lacks {section!r}"
    assert "```mermaid" in page


def test_find_accepts_slug_or_module_name() -> None:
    first = CATALOGUE[0]
    assert patterns.find(first.slug) == first
    assert patterns.find(first.module_name) == first


def test_unknown_slug_lists_the_known_ones() -> None:
    with pytest.raises(patterns.UnknownPattern) as unknown:
        patterns.find("no-such-pattern")
    for pattern in CATALOGUE:
        assert pattern.slug in str(unknown.value)


def test_the_readme_links_every_pattern_page() -> None:
    readme = (patterns.ROOT / "README.md").read_text()
    for pattern in CATALOGUE:
        assert f"(docs/patterns/{pattern.page.name})" in readme, f"README lacks {pattern.slug}"


def test_scenarios_run_longest_first_and_never_run_ones_before_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(patterns, "REPORTS_DIR", tmp_path)
    known = {p.slug: p for p in patterns.catalogue()}
    (tmp_path / "cqrs.json").write_text(json.dumps({"seconds": 4.0}))
    (tmp_path / "webhooks.json").write_text(json.dumps({"seconds": 20.0}))
    (tmp_path / "callback.json").write_text("not json")
    chosen = [known["cqrs"], known["callback"], known["webhooks"]]
    ordered = [p.slug for p in patterns.longest_first(chosen)]
    assert ordered == ["callback", "webhooks", "cqrs"]


def test_a_free_lane_takes_a_pattern_nobody_holds_before_a_held_one() -> None:
    """The poison fault test holds `held`: the one lane runs the others first, then `held`
    once it is let go, instead of sitting idle waiting for it."""
    known = {p.slug: p for p in patterns.catalogue()}
    order = [known["webhooks"], known["cqrs"], known["callback"]]
    held, ran = {"webhooks"}, []

    def run(pattern: patterns.Pattern) -> str:
        ran.append(pattern.slug)
        if len(ran) == 2:
            held.clear()
        return pattern.slug

    runs = patterns.side_by_side(order, run, jobs=1, free=lambda p: p.slug not in held)
    assert {slug: future.result(timeout=10) for slug, future in runs.items()} == {
        "webhooks": "webhooks",
        "cqrs": "cqrs",
        "callback": "callback",
    }
    assert ran == ["cqrs", "callback", "webhooks"]


def test_a_scenario_that_raises_fails_its_own_future_only() -> None:
    known = {p.slug: p for p in patterns.catalogue()}

    def run(pattern: patterns.Pattern) -> str:
        if pattern.slug == "cqrs":
            raise RuntimeError("the sandbox went away")
        return pattern.slug

    runs = patterns.side_by_side(
        [known["cqrs"], known["callback"]], run, jobs=2, free=lambda p: True
    )
    with pytest.raises(RuntimeError, match="went away"):
        runs["cqrs"].result(timeout=10)
    assert runs["callback"].result(timeout=10) == "callback"
