"""Extract a compact Google provider schema from a prebuilt CDKTF/CDK Terrain binding.

The registry is out of reach in CI, but PyPI is not: the prebuilt bindings
(`cdktf-cdktf-provider-google` for google 6.x, `cdktn-provider-google` for 8.x)
ship the provider's full schema as a jsii assembly. Every resource is a class
whose docs link to its registry page (that gives the Terraform type name), and
its `config` struct lists each argument with its real snake_case name in the
docs anchor, whether it is optional, and whether it is a nested block.

Only the types this repository uses are kept in full (the committed extract
stays small); the names of all resource and data types are kept so a check can
tell "no such type" from "not extracted". Regenerate after adding a type:

    pip download --no-deps -d /tmp/wheels cdktf-cdktf-provider-google==16.12.1
    pip download --no-deps -d /tmp/wheels cdktn-provider-google==21.1.0
    python tools/tf_schema.py --types-from terraform \\
        --output tests/data/google_provider_schema.json /tmp/wheels/*.whl
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import sys
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FORMAT = 1

# "Represents a {@link https://registry.terraform.io/providers/hashicorp/google/
# 6.50.0/docs/resources/cloudfunctions2_function google_cloudfunctions2_function}."
_REPRESENTS = re.compile(
    r"Represents a \{@link https://registry\.terraform\.io/providers/"
    r"(?P<source>[\w-]+/[\w-]+)/(?P<version>[^/]+)/docs"
    r"(?:/(?P<kind>resources|data-sources)/\w+)? (?P<type>\w+)\}"
)
# "... docs/resources/storage_bucket_object#detect_md5hash StorageBucketObject#..."
_ANCHOR = re.compile(r"registry\.terraform\.io/providers/\S*?#(\w+)[\s}]")

Json = dict[str, Any]


def read_assembly(path: Path) -> Json:
    """Load the jsii assembly from a wheel, a .jsii.tgz, a .jsii or a .jsii.gz."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            names = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
            if len(names) != 1:
                raise SystemExit(f"{path}: expected one *.jsii.tgz, found {names}")
            return _read_tarball(wheel.read(names[0]), str(path))
    if path.name.endswith(".tgz"):
        return _read_tarball(path.read_bytes(), str(path))
    data = path.read_bytes()
    return _load_json(gzip.decompress(data) if path.name.endswith(".gz") else data)


def _read_tarball(blob: bytes, origin: str) -> Json:
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        members = {m.name: m for m in tar.getmembers()}

        def read(name: str) -> bytes:
            handle = tar.extractfile(members[name])
            if handle is None:
                raise SystemExit(f"{origin}: {name} is not a file")
            return handle.read()

        assembly = _load_json(read("package/.jsii"))
        # Newer jsii writes a small redirect and the real assembly gzipped beside it.
        if assembly.get("schema") == "jsii/file-redirect":
            target = "package/" + str(assembly["filename"])
            raw = read(target)
            if assembly.get("compression") == "gzip":
                raw = gzip.decompress(raw)
            assembly = _load_json(raw)
        return assembly


def _load_json(raw: bytes) -> Json:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise SystemExit("the assembly is not a JSON object")
    return value


def _docs_text(member: Json) -> str:
    docs = member.get("docs", {})
    return f"{docs.get('summary', '')} {docs.get('remarks', '')}"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _hcl_name(prop: Json) -> str:
    """The argument's Terraform name: the docs anchor, else camelCase undone."""
    match = _ANCHOR.search(_docs_text(prop) + " ")
    return match.group(1) if match else _snake(prop["name"])


class Extractor:
    """Walks one assembly's types into the compact schema shape."""

    def __init__(self, assembly: Json) -> None:
        self.types: dict[str, Json] = assembly["types"]
        self.package = f"{assembly['name']}@{assembly['version']}"
        self.provider_version = ""
        self.provider_config = ""
        # kind -> Terraform type -> (class fqn, config struct fqn)
        self.classes: dict[str, dict[str, tuple[str, str]]] = {
            "resource": {},
            "data": {},
        }
        for type_info in self.types.values():
            if type_info.get("kind") != "class" or "initializer" not in type_info:
                continue
            match = _REPRESENTS.search(type_info.get("docs", {}).get("summary", ""))
            if not match:
                continue
            config = self._config_fqn(type_info)
            if match["kind"] is None:
                self.provider_version = match["version"]
                self.provider_config = config
            else:
                kind = "resource" if match["kind"] == "resources" else "data"
                self.classes[kind][match["type"]] = (type_info["fqn"], config)
        if not self.provider_version:
            raise SystemExit(f"{self.package}: no provider class found")

    @staticmethod
    def _config_fqn(type_info: Json) -> str:
        for parameter in type_info["initializer"].get("parameters", []):
            if parameter["name"] == "config":
                return str(parameter["type"]["fqn"])
        raise SystemExit(f"{type_info['fqn']}: no config parameter")

    def block(self, fqn: str, reader: str | None = None, depth: int = 0) -> Json:
        """The attributes and nested blocks of one struct.

        `reader` is the class whose getters expose the struct's values (the
        resource class, or the block's OutputReference): its read-only getters
        that no argument matches are the computed attributes, which references
        such as `service_config[0].uri` need.
        """
        if depth > 12:
            raise SystemExit(f"{fqn}: nesting deeper than 12, a cycle?")
        attributes: Json = {}
        blocks: Json = {}
        for prop in self.types[fqn].get("properties", []):
            name = _hcl_name(prop)
            required = not prop.get("optional", False)
            nested = self._struct(prop["type"])
            if nested is None:
                attributes[name] = {"type": self._type_text(prop["type"])}
                if required:
                    attributes[name]["required"] = True
                continue
            struct, nesting = nested
            entry = {
                "nesting": nesting,
                **self.block(struct, struct + "OutputReference", depth + 1),
            }
            if required:
                entry["required"] = True
            blocks[name] = entry
        for name, type_text in self._computed(reader, set(attributes) | set(blocks)):
            attributes[name] = {"type": type_text, "computed": True}
        result: Json = {"attributes": dict(sorted(attributes.items()))}
        if blocks:
            result["blocks"] = dict(sorted(blocks.items()))
        return result

    def _computed(self, reader: str | None, known: set[str]) -> list[tuple[str, str]]:
        """(name, type) of the read-only getters that are no argument or block."""
        if reader is None or reader not in self.types:
            return []
        found = []
        for prop in self.types[reader].get("properties", []):
            name = _snake(prop["name"])
            if (
                prop.get("static")
                or not prop.get("immutable")
                or prop["name"].endswith("Input")
                or prop["name"] == "internalValue"
                or name in known
            ):
                continue
            found.append((name, self._getter_type(prop["type"])))
        return found

    def _getter_type(self, type_ref: Json) -> str:
        fqn = str(type_ref.get("fqn", ""))
        if fqn.endswith(".StringMap"):
            return "map(string)"
        if fqn.endswith(".NumberMap"):
            return "map(number)"
        if fqn.endswith(".BooleanMap"):
            return "map(bool)"
        if fqn:
            return "any"
        return self._type_text(type_ref)

    def _struct(self, type_ref: Json) -> tuple[str, str] | None:
        """(struct fqn, "single"|"list") when the property is a nested block."""
        if "fqn" in type_ref and self.types.get(type_ref["fqn"], {}).get("datatype"):
            return type_ref["fqn"], "single"
        if "union" in type_ref:
            for option in type_ref["union"]["types"]:
                collection = option.get("collection")
                if collection and collection["kind"] == "array":
                    element = collection["elementtype"]
                    if "fqn" in element and element["fqn"] in self.types:
                        return element["fqn"], "list"
        return None

    def _type_text(self, type_ref: Json) -> str:
        if "primitive" in type_ref:
            primitive = str(type_ref["primitive"])
            return "bool" if primitive == "boolean" else primitive
        if "collection" in type_ref:
            collection = type_ref["collection"]
            inner = self._type_text(collection["elementtype"])
            return f"{'map' if collection['kind'] == 'map' else 'list'}({inner})"
        if "union" in type_ref:
            options = [
                self._type_text(t)
                for t in type_ref["union"]["types"]
                if not str(t.get("fqn", "")).endswith(".IResolvable")
            ]
            return options[0] if len(options) == 1 else "any"
        return "any"

    def extract(self, wanted: Iterable[tuple[str, str]]) -> Json:
        """The schema for the wanted (kind, type) pairs plus every type name."""
        schema: Json = {
            "package": self.package,
            "provider_version": self.provider_version,
            "provider": self.block(self.provider_config),
            "resource": {},
            "data": {},
            "all_types": {kind: sorted(self.classes[kind]) for kind in self.classes},
        }
        for kind, name in sorted(set(wanted)):
            found = self.classes[kind].get(name)
            if found is None:
                print(f"warning: {kind} {name} not in {self.package}", file=sys.stderr)
                continue
            reader, config = found
            schema[kind][name] = self.block(config, reader)
        return schema


def types_used(directory: Path) -> set[tuple[str, str]]:
    """Every (kind, type) declared in the .tf files under a directory."""
    declared = re.compile(r'^\s*(resource|data)\s+"(google[\w-]*)"', re.MULTILINE)
    found: set[tuple[str, str]] = set()
    for path in sorted(directory.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        found.update(declared.findall(path.read_text(encoding="utf-8")))
    return found


def render(document: Json) -> str:
    """Indented JSON with each attribute on one line: small and diffable."""
    text = json.dumps(document, indent=1)
    text = _ATTRIBUTE.sub(lambda m: re.sub(r"\s+", " ", m[0]).replace("{ ", "{"), text)
    return text + "\n"


_ATTRIBUTE = re.compile(r'\{\s*"type": "[^"]*"(,\s*"(required|computed)": true)?\s*\}')


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, extract, write the compact JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assemblies", nargs="+", type=Path, help=".whl/.tgz/.jsii")
    parser.add_argument("--types-from", type=Path, action="append", default=[])
    parser.add_argument("--type", dest="extra", action="append", default=[])
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)

    wanted: set[tuple[str, str]] = set()
    for directory in args.types_from:
        wanted |= types_used(directory)
    for item in args.extra:  # "resource:google_x" or "data:google_y"
        kind, _, name = item.partition(":")
        wanted.add((kind, name))

    versions: Json = {}
    for path in args.assemblies:
        extractor = Extractor(read_assembly(path))
        versions[extractor.provider_version] = extractor.extract(wanted)
        print(
            f"{path.name}: google {extractor.provider_version}, "
            f"{len(wanted)} types extracted",
            file=sys.stderr,
        )
    document = {
        "format": FORMAT,
        "source": "prebuilt CDKTF/CDK Terrain bindings on PyPI (jsii assembly)",
        "generated_by": "tools/tf_schema.py",
        "versions": dict(sorted(versions.items())),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(document), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
