"""The README's CLI advice gives clean output: awslocal without its deprecation banner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AWSLOCAL = Path(sys.executable).parent / "awslocal"


def awslocal_version(**settings: str) -> str:
    done = subprocess.run(
        [str(AWSLOCAL), "--version"],
        env={**os.environ, "AWS_ENDPOINT_URL": "http://localhost:4566", **settings},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout + done.stderr


def test_awslocal_prints_a_banner_unless_told_not_to() -> None:
    assert "deprecated" in awslocal_version()
    quiet = awslocal_version(DISABLE_DEPRECATION_NOTICE="1")
    assert "deprecated" not in quiet and "aws-cli/" in quiet


def test_env_example_turns_the_banner_off() -> None:
    example = (Path(__file__).parents[2] / ".env.example").read_text().splitlines()
    assert "DISABLE_DEPRECATION_NOTICE=1" in example
