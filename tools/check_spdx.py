#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks that every file of the project names its license: an SPDX line in its first three lines, or, for
files that cannot hold a comment (the fuzz corpus: raw inputs), a path covered by REUSE.toml. Prints every file
without one and exits 1 if there is one."""
import fnmatch
import pathlib
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
TAG = "SPDX-License-Identifier: Apache-2.0"
# Not the project's files: build trees, installs, version control, Python's caches.
SKIP_DIRS = {".git", "install", "__pycache__"}
# Files whose text is fixed by others (the license's own text; a git worktree's .git, which points to its repository).
SKIP_FILES = {"LICENSE", ".git"}


def covered_by_reuse():
    path = ROOT / "REUSE.toml"
    if not path.exists():
        return []
    patterns = []
    for annotation in tomllib.loads(path.read_text()).get("annotations", []):
        if annotation.get("SPDX-License-Identifier") != "Apache-2.0":
            continue
        paths = annotation["path"]
        patterns += [paths] if isinstance(paths, str) else paths
    return patterns


def project_files():
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.startswith("build") for part in rel.parts[:-1]):
            continue
        if path.is_file() and not rel.parts[0].startswith("build") and rel.name not in SKIP_FILES:
            yield rel


def main():
    reuse = covered_by_reuse()
    missing = []
    for rel in project_files():
        if any(fnmatch.fnmatch(rel.as_posix(), pattern) for pattern in reuse):
            continue
        with open(ROOT / rel, "rb") as f:
            head = b"".join(f.readline() for _ in range(3))
        if TAG.encode() not in head:
            missing.append(rel.as_posix())
    for rel in missing:
        print(f"{rel}: no '{TAG}' line in its first three lines")
    if not (ROOT / "LICENSE").exists():
        print("LICENSE: missing")
        return 1
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
