"""`make mutants`: reading the mutants files, applying a mutant to a copy, the verdicts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sandbox import mutants
from sandbox.mutants import Mutant, MutantFileError, Outcome, StaleMutant
from sandbox.patterns import Pattern, catalogue

PATTERN = Pattern("demo-pattern", "Demo", "a demo", ("sqs",), "seed 000")
HANDLER = "handlers/demo_pattern/app.py"
GOOD = """
[[mutant]]
name = "skip-the-check"
bug = "The handler forgets its check."
file = "handlers/demo_pattern/app.py"
find = '''if version == expected:'''
replace = '''if True:'''

[[mutant]]
name = "wrong-answer"
bug = "The handler answers 2."
file = "handlers/demo_pattern/app.py"
find = '''return 1'''
replace = '''return 2'''
"""


def project(root: Path, mutants_text: str = GOOD) -> Path:
    (root / "handlers" / "demo_pattern").mkdir(parents=True)
    (root / HANDLER).write_text(
        "def handler(version, expected):\n    if version == expected:\n        return 1\n"
    )
    (root / "scenarios").mkdir()
    (root / "scenarios" / "demo_pattern.mutants.toml").write_text(mutants_text)
    return root


def test_loads_each_mutant_with_its_pattern(tmp_path: Path) -> None:
    loaded = mutants.load(PATTERN, project(tmp_path))
    assert [m.name for m in loaded] == ["skip-the-check", "wrong-answer"]
    assert loaded[0].pattern == "demo-pattern"
    assert loaded[0].replace == "if True:"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[mutant]]\nname = 'x'\n", "missing or not text"),
        (GOOD.replace('"wrong-answer"', '"skip-the-check"'), "two mutants are named"),
        (GOOD.replace('"wrong-answer"', '"Wrong Answer"'), "not kebab-case"),
        (GOOD.replace("'''return 2'''", "'''return 1'''"), "find is empty or equals replace"),
        (GOOD.replace('file = "handlers/demo_pattern/app.py"', 'file = "nope.py"', 1), "no file"),
        ("this is not toml [", "not valid TOML"),
        ("", r"no \[\[mutant\]\] entries"),
    ],
)
def test_a_bad_mutants_file_says_what_to_fix(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(MutantFileError, match=says):
        mutants.load(PATTERN, project(tmp_path, text))


def test_a_missing_mutants_file_is_named(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "scenarios" / "demo_pattern.mutants.toml").unlink()
    with pytest.raises(MutantFileError, match="demo_pattern.mutants.toml does not exist"):
        mutants.load(PATTERN, root)


def test_apply_writes_the_replacement(tmp_path: Path) -> None:
    root = project(tmp_path)
    mutant = mutants.load(PATTERN, root)[0]
    mutants.apply(mutant, root)
    assert "if True:" in (root / HANDLER).read_text()
    assert "version == expected" not in (root / HANDLER).read_text()


@pytest.mark.parametrize("copies", [0, 2])
def test_a_find_text_not_there_exactly_once_is_stale(tmp_path: Path, copies: int) -> None:
    root = project(tmp_path)
    mutant = Mutant("demo-pattern", "m", "bug", HANDLER, "return 1", "return 2")
    (root / HANDLER).write_text("x = 0\n" + "return 1\n" * copies)
    with pytest.raises(StaleMutant, match=f"occurs {copies} times in {HANDLER}"):
        mutants.apply(mutant, root)


def test_the_copy_holds_tracked_and_untracked_files_but_not_venv_or_state(tmp_path: Path) -> None:
    root = project(tmp_path / "project")
    (root / ".gitignore").write_text("ignored.txt\n")
    (root / "ignored.txt").write_text("no")
    for folder in (".venv", ".sandbox"):
        (root / folder).mkdir()
        (root / folder / "big").write_text("no")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", HANDLER, ".gitignore"], cwd=root, check=True)
    # the mutants file stays untracked (not yet committed): it is copied too
    assert mutants.project_files(root) == [
        ".gitignore",
        HANDLER,
        "scenarios/demo_pattern.mutants.toml",
    ]
    destination = tmp_path / "copy"
    mutants.scratch_copy(destination, root)
    assert (destination / HANDLER).read_text() == (root / HANDLER).read_text()
    assert (destination / ".sandbox" / "build").is_dir()
    assert not (destination / ".venv").exists()
    assert not (destination / "ignored.txt").exists()


def test_first_failure_names_the_check_and_what_was_seen(tmp_path: Path) -> None:
    report = tmp_path / "demo.json"
    report.write_text(
        json.dumps(
            {
                "steps": [
                    {"title": "one", "check_details": [{"what": "a", "outcome": "passed"}]},
                    {
                        "title": "two",
                        "error": "ScenarioFailed: …",
                        "check_details": [
                            {"what": "writes", "outcome": "failed", "expected": 1, "seen": 2}
                        ],
                    },
                ]
            }
        )
    )
    assert mutants.first_failure(report) == "writes: expected 1, saw 2"
    report.write_text(json.dumps({"steps": [{"title": "wait", "error": "WaitTimedOut: x"}]}))
    assert mutants.first_failure(report) == "wait: WaitTimedOut: x"
    assert "no report" in mutants.first_failure(tmp_path / "missing.json")


def test_the_score_lists_survivors_and_fails_unless_all_are_killed() -> None:
    def outcome(name: str, verdict: str) -> Outcome:
        return Outcome(Mutant("p", name, "bug", "f", "a", "b"), verdict, 1.0)

    text, ok = mutants.summary([outcome("a", "killed"), outcome("b", "killed")], [])
    assert ok and "Score: 2 / 2 mutants killed" in text
    text, ok = mutants.summary([outcome("a", "killed"), outcome("b", "survived")], [])
    assert not ok and "Survived: p/b" in text
    text, ok = mutants.summary([outcome("a", "stale")], [])
    assert not ok and "Stale: p/a" in text
    text, ok = mutants.summary([outcome("a", "killed")], ["q: no file"])
    assert not ok and "Not run: q: no file" in text


def test_every_mutant_in_the_project_applies_to_the_code_as_it_is() -> None:
    """A mutant whose find text no longer matches would be reported stale at run time; catch
    it here, without a sandbox."""
    for pattern in catalogue():
        if not mutants.mutants_file(pattern).is_file():
            continue
        for mutant in mutants.load(pattern):
            text = (mutants.ROOT / mutant.file).read_text()
            assert text.count(mutant.find) == 1, f"{pattern.slug}/{mutant.name} is stale"


def test_every_mutant_says_what_killed_it_and_every_file_lists_its_unkilled_checks() -> None:
    """The audit of a scenario is kept beside its mutants: each mutant's `# killed by:` line,
    and a closing block naming each check no mutant kills, with the reason."""
    for pattern in catalogue():
        text = mutants.mutants_file(pattern).read_text()
        blocks = text.split("[[mutant]]")[1:]
        unexplained = [block.split("\n", 2)[1] for block in blocks if "# killed by:" not in block]
        assert not unexplained, f"{pattern.slug}: no `# killed by:` line for {unexplained}"
        assert "# Checks without a mutant, and why:" in text, pattern.slug
