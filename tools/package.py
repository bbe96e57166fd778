"""Build the function's source zip, byte for byte the same for the same sources.

Terraform names the uploaded object after the zip's MD5, so a rebuild of
unchanged code must give the same bytes (or every apply would redeploy), and a
change to any shipped file must give new bytes. Hence: sorted entries, a fixed
timestamp, fixed permissions, one compression level. Only what the function
runs is shipped: main.py, requirements.txt and the watchdog package without
its sandbox (test tooling).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "build" / "function.zip"

TOP_LEVEL_FILES = ("main.py", "requirements.txt")
PACKAGE = "watchdog"
EXCLUDED_PACKAGES = ("watchdog/sandbox",)

# The earliest time a zip entry can carry; any fixed value would do.
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def collect_files(root: Path = ROOT) -> list[str]:
    """Repository-relative POSIX paths of the files the function needs, sorted."""
    missing = [name for name in TOP_LEVEL_FILES if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{root} has no {', '.join(missing)}")
    files = list(TOP_LEVEL_FILES)
    for path in (root / PACKAGE).rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        if any(
            relative == excluded or relative.startswith(excluded + "/")
            for excluded in EXCLUDED_PACKAGES
        ):
            continue
        files.append(relative)
    return sorted(files)


def build_zip(root: Path = ROOT, output: Path = DEFAULT_OUTPUT) -> Path:
    """Write the zip (atomically) and return its path."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name in collect_files(root):
            entry = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o100644 << 16  # regular file, rw-r--r--
            entry.create_system = 3  # Unix, so the mode above is honoured
            archive.writestr(entry, (root / name).read_bytes(), compresslevel=9)
    partial.replace(output)
    return output


def main(argv: list[str] | None = None) -> int:
    """Build the zip and print its path, entry count and MD5."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    path = build_zip(args.root, args.output)
    with zipfile.ZipFile(path) as archive:
        count = len(archive.namelist())
    digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    print(f"{path}: {count} files, md5 {digest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
