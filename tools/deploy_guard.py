"""Stop `make deploy` early, with a clear message, when a required input is unset.

Terraform would stop too, but only after `init`, and with a prompt or a terse
"No value for required variable". A required variable is one with no default
in terraform/variables.tf; it counts as set when terraform.tfvars, a
*.auto.tfvars file or a TF_VAR_<name> environment variable gives it a value,
which are the places `terraform apply` reads without extra arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import hcl2
from hcl2.utils import SerializationOptions

ROOT = Path(__file__).resolve().parent.parent
_OPTIONS = SerializationOptions(with_comments=False)


def required_variables(module: Path) -> list[str]:
    """Names of the variables that have no default, sorted."""
    names: list[str] = []
    for path in sorted(module.glob("*.tf")):
        parsed = hcl2.loads(
            path.read_text(encoding="utf-8"), serialization_options=_OPTIONS
        )
        for entry in parsed.get("variable", []):
            for key, body in entry.items():
                if key.startswith("__"):
                    continue
                if "default" not in body:
                    names.append(key.strip('"'))
    return sorted(names)


def given_variables(module: Path, environ: Mapping[str, str]) -> set[str]:
    """Names given a non-empty value by tfvars files or TF_VAR_ variables."""
    given = {
        name[len("TF_VAR_") :]
        for name, value in environ.items()
        if name.startswith("TF_VAR_") and value.strip()
    }
    files = [module / "terraform.tfvars", *sorted(module.glob("*.auto.tfvars"))]
    for path in files:
        if not path.is_file():
            continue
        parsed = hcl2.loads(
            path.read_text(encoding="utf-8"), serialization_options=_OPTIONS
        )
        given.update(
            key
            for key, value in parsed.items()
            if not key.startswith("__") and value not in (None, "", [], '""')
        )
    return given


def missing_variables(module: Path, environ: Mapping[str, str]) -> list[str]:
    """Required variables nothing sets, sorted."""
    given = given_variables(module, environ)
    return [name for name in required_variables(module) if name not in given]


def explain(module: Path, missing: list[str]) -> str:
    """What to do, for a person who just typed `make deploy`."""
    relative = os.path.relpath(module, Path.cwd())
    lines = [
        f"deploy stopped: no value for {', '.join(missing)}.",
        f"Copy {relative}/terraform.tfvars.example to {relative}/terraform.tfvars and",
        "fill it in, or export the values, for example:",
        "  export TF_VAR_project_id=my-project TF_VAR_region=europe-west1",
        "  export TF_VAR_watched_services="
        "'[\"projects/my-project/locations/europe-west1/services/my-app\"]'",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when every required variable is set, else 2 with an explanation."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", type=Path, nargs="?", default=ROOT / "terraform")
    args = parser.parse_args(argv)
    missing = missing_variables(args.module, os.environ)
    if missing:
        print(explain(args.module, missing), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
