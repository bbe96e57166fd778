"""Validate Terraform against the Google provider's real schema, with no registry.

`terraform validate` needs the provider binary, which CI cannot download. The
schema it would check against is committed instead (tests/data, extracted by
tools/tf_schema.py from the prebuilt CDKTF/CDK Terrain bindings), and this
module checks the parsed HCL (python-hcl2) against it:

- every resource and data source type exists in the provider version;
- every argument and nested block exists, blocks are written as blocks and
  arguments as arguments, a single block appears at most once;
- every required argument and block is set (a `dynamic` block counts);
- no computed-only attribute is set;
- every `var.`, `local.`, resource, data and module reference names something
  declared, every attribute path after a resource names an attribute or block
  of its type, and module calls pass only known inputs and every required one.

What it does not do, and `terraform validate` would: type-check expressions
and evaluate functions; values are never evaluated here. The real thing runs
too, against tools/tf_stub_provider.py, where the tooling virtualenv exists.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions, process_escape_sequences

DEFAULT_SCHEMA = Path(__file__).resolve().parent.parent / (
    "tests/data/google_provider_schema.json"
)

# Arguments every resource or data block takes besides its schema.
_RESOURCE_META = {"count", "for_each", "depends_on", "provider", "lifecycle"}
_RESOURCE_META_BLOCKS = {"lifecycle", "provisioner", "connection"}
_MODULE_META = {"source", "version", "count", "for_each", "depends_on", "providers"}
_PROVIDER_META = {"alias", "version"}

_OPTIONS = SerializationOptions(with_comments=False, preserve_heredocs=False)

Json = dict[str, Any]


@dataclass(frozen=True)
class Problem:
    """One finding, located as precisely as the parser allows."""

    file: str
    line: int
    address: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.address}: {self.message}"


@dataclass(frozen=True)
class Declared:
    """A resource, data source, module call or provider block."""

    kind: str  # "resource", "data", "module", "provider"
    type: str  # resource type, module name or provider name
    name: str  # resource name; "" for providers and modules
    body: Json
    file: str
    line: int

    @property
    def address(self) -> str:
        if self.kind == "resource":
            return f"{self.type}.{self.name}"
        if self.kind == "data":
            return f"data.{self.type}.{self.name}"
        return f"{self.kind}.{self.type}"


@dataclass
class Module:
    """One directory of .tf files, parsed."""

    directory: Path
    declared: list[Declared] = field(default_factory=list)
    variables: dict[str, Json] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Json] = field(default_factory=dict)
    terraform: list[Json] = field(default_factory=list)
    files: dict[str, Json] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    def resources(self, type_name: str | None = None) -> list[Declared]:
        """Managed resources, optionally of one type."""
        return [
            d
            for d in self.declared
            if d.kind == "resource" and type_name in (None, d.type)
        ]

    def resource(self, type_name: str, name: str) -> Declared:
        """The one resource with that address; KeyError if absent."""
        for item in self.resources(type_name):
            if item.name == name:
                return item
        raise KeyError(f"{type_name}.{name}")


# --- parsing ---------------------------------------------------------------------


def unquote(key: str) -> str:
    """A block label or key as written, without python-hcl2's quotes."""
    if len(key) >= 2 and key[0] == key[-1] == '"':
        return key[1:-1]
    return key


def string_literal(value: Any) -> str | None:
    """The text of a quoted string (interpolations left as written), else None."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return process_escape_sequences(value[1:-1])
    return None


def is_block(value: Any) -> bool:
    """Whether a parsed value is one or more nested blocks."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and item.get("__is_block__") for item in value)
    )


def body_items(body: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """The arguments and blocks of a body, without the parser's markers."""
    for key, value in body.items():
        if not (key.startswith("__") and key.endswith("__")):
            yield key, value


def _header_line(text: str, words: list[str]) -> int:
    pattern = r"^\s*" + r"\s+".join(
        re.escape(w) if i == 0 else f'"?{re.escape(w)}"?' for i, w in enumerate(words)
    )
    match = re.search(pattern + r"\s*\{", text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def load_module(directory: Path) -> Module:
    """Parse every .tf file directly in a directory (not subdirectories)."""
    module = Module(directory=directory)
    for path in sorted(directory.glob("*.tf")):
        text = path.read_text(encoding="utf-8")
        parsed = hcl2.loads(text, serialization_options=_OPTIONS)
        module.files[path.name] = parsed
        module.texts[path.name] = text
        for kind in ("resource", "data"):
            for entry in parsed.get(kind, []):
                for type_key, named in body_items(entry):
                    for name_key, body in body_items(named):
                        type_name, name = unquote(type_key), unquote(name_key)
                        line = _header_line(text, [kind, type_name, name])
                        module.declared.append(
                            Declared(kind, type_name, name, body, path.name, line)
                        )
        for entry in parsed.get("module", []):
            for name_key, body in body_items(entry):
                name = unquote(name_key)
                line = _header_line(text, ["module", name])
                module.declared.append(
                    Declared("module", name, "", body, path.name, line)
                )
        for entry in parsed.get("provider", []):
            for name_key, body in body_items(entry):
                name = unquote(name_key)
                line = _header_line(text, ["provider", name])
                module.declared.append(
                    Declared("provider", name, "", body, path.name, line)
                )
        for entry in parsed.get("variable", []):
            for name_key, body in body_items(entry):
                module.variables[unquote(name_key)] = body
        for entry in parsed.get("locals", []):
            module.locals.update(body_items(entry))
        for entry in parsed.get("output", []):
            for name_key, body in body_items(entry):
                module.outputs[unquote(name_key)] = body
        module.terraform.extend(parsed.get("terraform", []))
    return module


# --- the schema --------------------------------------------------------------------


def load_schema(path: Path = DEFAULT_SCHEMA) -> dict[str, Json]:
    """Provider version -> schema, from the committed extract."""
    document = json.loads(path.read_text(encoding="utf-8"))
    versions: dict[str, Json] = document["versions"]
    return versions


# --- checks ------------------------------------------------------------------------


def _check_body(
    body: Mapping[str, Any],
    schema: Json,
    where: str,
    meta: set[str],
    meta_blocks: set[str],
) -> list[str]:
    """Messages for one body against one block schema (recursively)."""
    messages: list[str] = []
    attributes: Json = schema.get("attributes", {})
    blocks: Json = schema.get("blocks", {})
    seen: set[str] = set()
    prefix = f"{where}." if where else ""

    for key, value in body_items(body):
        if key == "dynamic" and isinstance(value, list):
            for entry in value:
                for label_key, dynamic_body in body_items(entry):
                    label = unquote(label_key)
                    if label not in blocks:
                        messages.append(
                            f'dynamic "{prefix}{label}": no such block'
                            + _suggest(label, attributes, blocks)
                        )
                        continue
                    seen.add(label)
                    messages.extend(
                        _check_dynamic(dynamic_body, blocks[label], label, prefix)
                    )
            continue
        if key in meta or (key in meta_blocks and is_block(value)):
            if key == "lifecycle" and is_block(value):
                messages.extend(_check_lifecycle(value))
            continue
        if is_block(value):
            if key in blocks:
                seen.add(key)
                if blocks[key]["nesting"] == "single" and len(value) > 1:
                    messages.append(f"{prefix}{key}: block may appear at most once")
                for item in value:
                    messages.extend(
                        _check_body(item, blocks[key], prefix + key, set(), set())
                    )
            elif key in attributes:
                messages.append(
                    f"{prefix}{key}: is an argument, not a block (write {key} = ...)"
                )
            else:
                messages.append(
                    f"{prefix}{key}: unsupported block"
                    + _suggest(key, attributes, blocks)
                )
            continue
        if key in attributes:
            if attributes[key].get("computed"):
                messages.append(
                    f"{prefix}{key}: is computed by the provider; it cannot be set"
                )
            elif value is not None:
                seen.add(key)
        elif key in blocks:
            messages.append(
                f"{prefix}{key}: is a block, not an argument (write {key} {{ }})"
            )
        else:
            messages.append(
                f"{prefix}{key}: unsupported argument"
                + _suggest(key, attributes, blocks)
            )

    for name, attribute in attributes.items():
        if (
            attribute.get("required")
            and not attribute.get("computed")
            and name not in seen
        ):
            messages.append(f"{prefix}{name}: required argument is not set")
    for name, block in blocks.items():
        if block.get("required") and name not in seen:
            messages.append(f"{prefix}{name}: required block is missing")
    return messages


def _check_dynamic(body: Json, schema: Json, label: str, prefix: str) -> list[str]:
    messages: list[str] = []
    contents: list[Json] = []
    for key, value in body_items(body):
        if key == "content" and is_block(value):
            contents.extend(value)
        elif key not in {"for_each", "iterator", "labels"}:
            messages.append(f'dynamic "{prefix}{label}": unsupported argument {key}')
    if len(contents) != 1:
        messages.append(f'dynamic "{prefix}{label}": needs exactly one content block')
    for content in contents:
        messages.extend(_check_body(content, schema, prefix + label, set(), set()))
    return messages


def _check_lifecycle(blocks: list[Json]) -> list[str]:
    allowed = {
        "create_before_destroy",
        "prevent_destroy",
        "ignore_changes",
        "replace_triggered_by",
        "precondition",
        "postcondition",
    }
    messages = []
    for block in blocks:
        for key, value in body_items(block):
            if key not in allowed:
                messages.append(f"lifecycle.{key}: unsupported argument")
            elif key in {"precondition", "postcondition"}:
                for condition in value if is_block(value) else []:
                    keys = {k for k, _ in body_items(condition)}
                    if keys != {"condition", "error_message"}:
                        messages.append(
                            f"lifecycle.{key}: needs condition and error_message"
                        )
    return messages


def _suggest(name: str, attributes: Json, blocks: Json) -> str:
    candidates = sorted(set(attributes) | set(blocks))
    close = [c for c in candidates if _close(name, c)]
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _close(left: str, right: str) -> bool:
    if left.replace("_", "") == right.replace("_", ""):
        return True
    if abs(len(left) - len(right)) > 2:
        return False
    previous = list(range(len(right) + 1))
    for i, a in enumerate(left, 1):
        current = [i]
        for j, b in enumerate(right, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b))
            )
        previous = current
    return previous[-1] <= 2


def check_against_schema(module: Module, schema: Json) -> list[Problem]:
    """Problems of every resource, data source and provider block."""
    problems: list[Problem] = []
    all_types: Json = schema["all_types"]
    version = schema["provider_version"]
    for item in module.declared:
        if item.kind == "provider":
            if item.type != "google":
                continue
            messages = _check_body(
                item.body, schema["provider"], "", _PROVIDER_META, set()
            )
        elif item.kind in ("resource", "data"):
            if not item.type.startswith("google_"):
                problems.append(
                    Problem(
                        item.file,
                        item.line,
                        item.address,
                        "not a google provider type; no schema to check it",
                    )
                )
                continue
            if item.type not in all_types[item.kind]:
                messages = [f"google {version} has no {item.kind} type {item.type}"]
            elif item.type not in schema[item.kind]:
                messages = [
                    f"{item.type} is not in the committed schema extract; "
                    "rerun tools/tf_schema.py (see its docstring)"
                ]
            else:
                meta = _RESOURCE_META
                meta_blocks = (
                    _RESOURCE_META_BLOCKS if item.kind == "resource" else {"lifecycle"}
                )
                messages = _check_body(
                    item.body, schema[item.kind][item.type], "", meta, meta_blocks
                )
        else:
            continue
        problems.extend(
            Problem(item.file, item.line, item.address, f"{message} [google {version}]")
            for message in messages
        )
    problems.extend(_check_attribute_references(module, schema))
    return problems


# `google_x.name[0].a.b`, `data.google_y.name["k"].c`: the path after the name.
_ATTRIBUTE_PATH = re.compile(
    r"(?<![\w.])(data\.)?(google_\w+)\.([A-Za-z_][\w-]*)"
    r"((?:\[[^\]]*\]|\.[A-Za-z_]\w*)*)"
)
_STEP = re.compile(r"\[[^\]]*\]|\.([A-Za-z_]\w*)")


def _check_attribute_references(module: Module, schema: Json) -> list[Problem]:
    """References name attributes and blocks that the resource type has."""
    declared = {(d.kind, d.type, d.name) for d in module.declared}
    problems: list[Problem] = []
    for file_name, parsed in module.files.items():
        for text in _strings(parsed):
            for expression in _expressions(text):
                for match in _ATTRIBUTE_PATH.finditer(expression):
                    kind = "data" if match[1] else "resource"
                    if (kind, match[2], match[3]) not in declared:
                        continue  # reported by check_references
                    block = schema[kind].get(match[2])
                    if block is None:
                        continue  # reported with the declaration
                    missing = _walk(block, match[4])
                    if missing:
                        source = module.texts[file_name]
                        offset = max(source.find(match[0]), 0)
                        problems.append(
                            Problem(
                                file_name,
                                source.count("\n", 0, offset) + 1,
                                match[0],
                                f"{match[2]} has no attribute or block {missing}"
                                f" [google {schema['provider_version']}]",
                            )
                        )
    return problems


def _walk(block: Json, path: str) -> str | None:
    """The first name along a reference path the schema lacks, or None."""
    current: Json | None = block
    for step in _STEP.finditer(path):
        name = step[1]
        if name is None or current is None:
            continue  # an index, or inside a value the schema does not describe
        blocks: Json = current.get("blocks", {})
        if name in blocks:
            current = blocks[name]
        elif name in current.get("attributes", {}) or name == "id":
            current = None
        else:
            return name
    return None


# --- references ----------------------------------------------------------------------

_REFERENCE = re.compile(
    r"(?<![\w.])(?:(var|local|module)\.([A-Za-z_][\w-]*)"
    r"|data\.(google_\w+)\.([A-Za-z_][\w-]*)"
    r"|(google_\w+)\.([A-Za-z_][\w-]*))"
)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _expressions(text: str) -> Iterator[str]:
    """The ${...} parts of a parsed value: only they can hold references."""
    start = text.find("${")
    while start != -1:
        depth, index = 0, start + 1
        while index < len(text):
            if text[index] == "{":
                depth += 1
            elif text[index] == "}":
                depth -= 1
                if depth == 0:
                    break
            index += 1
        yield text[start + 2 : index]
        start = text.find("${", index)


def check_references(module: Module) -> list[Problem]:
    """Every reference names a declared variable, local, resource or module."""
    resources = {(d.type, d.name) for d in module.declared if d.kind == "resource"}
    data = {(d.type, d.name) for d in module.declared if d.kind == "data"}
    modules = {d.type for d in module.declared if d.kind == "module"}
    problems: list[Problem] = []
    for file_name, parsed in module.files.items():
        for text in _strings(parsed):
            for expression in _expressions(text):
                for match in _REFERENCE.finditer(expression):
                    kind, name, data_type, data_name, res_type, res_name = (
                        match.groups()
                    )
                    missing = (
                        (kind == "var" and name not in module.variables)
                        or (kind == "local" and name not in module.locals)
                        or (kind == "module" and name not in modules)
                        or (
                            data_type is not None and (data_type, data_name) not in data
                        )
                        or (
                            res_type is not None
                            and (res_type, res_name) not in resources
                        )
                    )
                    if missing:
                        source = module.texts[file_name]
                        offset = max(source.find(match.group(0)), 0)
                        line = source.count("\n", 0, offset) + 1
                        problems.append(
                            Problem(
                                file_name,
                                line,
                                match.group(0),
                                "reference to an undeclared name",
                            )
                        )
    return problems


def check_module_calls(module: Module) -> list[Problem]:
    """Module calls to local paths pass known inputs and every required one."""
    problems: list[Problem] = []
    for call in (d for d in module.declared if d.kind == "module"):
        source = string_literal(call.body.get("source"))
        if source is None or not source.startswith("."):
            continue
        target = load_module((module.directory / source).resolve())
        given = {key for key, _ in body_items(call.body)} - _MODULE_META
        for key in sorted(given - set(target.variables)):
            problems.append(
                Problem(
                    call.file,
                    call.line,
                    call.address,
                    f"{source} has no variable {key}",
                )
            )
        for name, variable in sorted(target.variables.items()):
            if "default" not in variable and name not in given:
                problems.append(
                    Problem(
                        call.file,
                        call.line,
                        call.address,
                        f"required variable {name} is not set",
                    )
                )
    return problems


def validate(directory: Path, schemas: Mapping[str, Json]) -> list[Problem]:
    """Every check, against every provider version in the extract."""
    module = load_module(directory)
    problems = check_references(module) + check_module_calls(module)
    for schema in schemas.values():
        problems.extend(check_against_schema(module, schema))
    return problems


def main(argv: list[str] | None = None) -> int:
    """Validate directories; exit 1 and print each problem when any is found."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", type=Path)
    parser.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    args = parser.parse_args(argv)
    schemas = load_schema(args.schema)
    problems = [p for d in args.directories for p in validate(d, schemas)]
    for problem in problems:
        print(problem)
    checked = ", ".join(sorted(schemas))
    print(
        f"{len(problems)} problem(s); checked against google {checked}", file=sys.stderr
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
