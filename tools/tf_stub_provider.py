"""A schema-only stand-in for hashicorp/google, so `terraform validate` runs offline.

Terraform validates a configuration against the schema its provider reports
over the plugin protocol (tfplugin6 over gRPC). This process reports the schema
committed in tests/data/google_provider_schema.json for one provider version,
answers every validation call with "no problems", and does nothing else: it
cannot plan or apply. Installed into a filesystem mirror (see
tests/test_terraform.py), it lets `terraform init`, `terraform validate` and
`terraform test` with `mock_provider` run with no registry and no network.

It runs in the tooling virtualenv (`.venv-tf`), which has the `tf` package
from PyPI: its generated tfplugin6 and go-plugin protobuf modules are used
here, its provider framework is not.

Known shortcoming: the extract does not keep which optional attributes are
also computed, nor set versus list nesting, so every optional attribute is
reported optional+computed and every block as a list. That is looser than the
real provider only for plans, which this stub never makes.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import sys
import tempfile
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tf.gen import grpc_controller_pb2 as controller_pb
from tf.gen import grpc_controller_pb2_grpc as controller_rpc
from tf.gen import grpc_stdio_pb2_grpc as stdio_rpc
from tf.gen import tfplugin_pb2 as pb
from tf.gen import tfplugin_pb2_grpc as rpc

Json = dict[str, Any]

# go-plugin refuses to start a plugin that does not see this cookie, and a
# plugin should refuse to start without it: run directly, it would hang.
_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"


def cty_type(text: str) -> bytes:
    """The cty JSON type for the extract's type text (list(string), map(bool)...)."""

    def parse(value: str) -> Any:
        if value.startswith(("list(", "map(")):
            kind, _, inner = value.partition("(")
            return [kind, parse(inner[:-1])]
        return {"string": "string", "number": "number", "bool": "bool"}.get(
            value, "dynamic"
        )

    return json.dumps(parse(text)).encode()


def block_to_pb(block: Json) -> pb.Schema.Block:
    """A Terraform schema block from one block of the extract."""
    attributes = []
    for name, attribute in sorted(block.get("attributes", {}).items()):
        computed_only = bool(attribute.get("computed"))
        required = bool(attribute.get("required")) and not computed_only
        attributes.append(
            pb.Schema.Attribute(
                name=name,
                type=cty_type(attribute["type"]),
                required=required,
                optional=not required and not computed_only,
                computed=not required,
                description_kind=pb.StringKind.PLAIN,
            )
        )
    nested = []
    for name, child in sorted(block.get("blocks", {}).items()):
        nested.append(
            pb.Schema.NestedBlock(
                type_name=name,
                block=block_to_pb(child),
                nesting=pb.Schema.NestedBlock.NestingMode.LIST,
                min_items=1 if child.get("required") else 0,
                max_items=1 if child.get("nesting") == "single" else 0,
            )
        )
    return pb.Schema.Block(
        version=0,
        attributes=attributes,
        block_types=nested,
        description_kind=pb.StringKind.PLAIN,
    )


def schema_response(schema: Json) -> pb.GetProviderSchema.Response:
    """The whole GetProviderSchema answer for one provider version."""
    return pb.GetProviderSchema.Response(
        provider=pb.Schema(version=0, block=block_to_pb(schema["provider"])),
        resource_schemas={
            name: pb.Schema(version=0, block=block_to_pb(block))
            for name, block in schema["resource"].items()
        },
        data_source_schemas={
            name: pb.Schema(version=0, block=block_to_pb(block))
            for name, block in schema["data"].items()
        },
        server_capabilities=pb.ServerCapabilities(plan_destroy=False),
    )


class SchemaOnlyProvider(rpc.ProviderServicer):  # type: ignore[misc]
    """Reports the schema and accepts every configuration; refuses the rest."""

    def __init__(self, schema: Json) -> None:
        self.schema = schema
        self.response = schema_response(schema)

    def GetMetadata(self, request: Any, context: Any) -> Any:
        return pb.GetMetadata.Response(
            server_capabilities=pb.ServerCapabilities(plan_destroy=False),
            resources=[
                pb.GetMetadata.ResourceMetadata(type_name=n)
                for n in self.schema["resource"]
            ],
            data_sources=[
                pb.GetMetadata.DataSourceMetadata(type_name=n)
                for n in self.schema["data"]
            ],
        )

    def GetProviderSchema(self, request: Any, context: Any) -> Any:
        return self.response

    def ValidateProviderConfig(self, request: Any, context: Any) -> Any:
        return pb.ValidateProviderConfig.Response()

    def ValidateResourceConfig(self, request: Any, context: Any) -> Any:
        return pb.ValidateResourceConfig.Response()

    def ValidateDataResourceConfig(self, request: Any, context: Any) -> Any:
        return pb.ValidateDataResourceConfig.Response()

    def GetFunctions(self, request: Any, context: Any) -> Any:
        return pb.GetFunctions.Response()

    def StopProvider(self, request: Any, context: Any) -> Any:
        return pb.StopProvider.Response()


def _certificate() -> tuple[bytes, bytes, bytes]:
    """A throwaway self-signed server certificate: (DER, cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return (
        certificate.public_bytes(serialization.Encoding.DER),
        certificate.public_bytes(serialization.Encoding.PEM),
        key_pem,
    )


def serve(schema: Json, reattach: bool = False) -> None:
    """Speak go-plugin: serve on a unix socket, print the handshake, wait.

    With `reattach`, serve without TLS until killed and print the value of
    TF_REATTACH_PROVIDERS instead: every Terraform command then uses this one
    process rather than starting a provider per operation (a test run starts
    dozens, and each start costs a Python interpreter).
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    rpc.add_ProviderServicer_to_server(SchemaOnlyProvider(schema), server)
    stopping: list[bool] = []

    class Controller(controller_rpc.GRPCControllerServicer):  # type: ignore[misc]
        def Shutdown(self, request: Any, context: Any) -> Any:
            stopping.append(True)
            return controller_pb.Empty()

    class Stdio(stdio_rpc.GRPCStdioServicer):  # type: ignore[misc]
        def StreamStdio(self, request: Any, context: Any) -> Any:
            return iter(())

    controller_rpc.add_GRPCControllerServicer_to_server(Controller(), server)
    stdio_rpc.add_GRPCStdioServicer_to_server(Stdio(), server)

    with tempfile.TemporaryDirectory(prefix="tf-stub-") as directory:
        socket = str(Path(directory) / "plugin.sock")
        if reattach:
            server.add_insecure_port(f"unix://{socket}")
            server.start()
            print(json.dumps({_ADDRESS: _reattach_entry(socket)}), flush=True)
        else:
            der, cert_pem, key_pem = _certificate()
            credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)])
            server.add_secure_port(f"unix://{socket}", credentials)
            server.start()
            handshake = ["1", "6", "unix", socket, "grpc"]
            handshake.append(base64.b64encode(der).decode().rstrip("="))
            print("|".join(handshake), flush=True)
        # wait_for_termination returns True on timeout: poll until Shutdown.
        while not stopping:
            server.wait_for_termination(timeout=0.1)
        server.stop(grace=0)


_ADDRESS = "registry.terraform.io/hashicorp/google"


def _reattach_entry(socket: str) -> Json:
    return {
        "Protocol": "grpc",
        "ProtocolVersion": 6,
        "Pid": os.getpid(),
        "Test": True,  # Terraform must not stop a provider it did not start
        "Addr": {"Network": "unix", "String": socket},
    }


def main(argv: list[str] | None = None) -> int:
    """Load one version of the extract and serve it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", type=Path, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--reattach", action="store_true")
    args = parser.parse_args(argv)
    if not args.reattach and os.environ.get(_COOKIE_KEY) != _COOKIE_VALUE:
        print(
            "This is a Terraform provider plugin; Terraform starts it.", file=sys.stderr
        )
        return 1
    document = json.loads(args.schema.read_text(encoding="utf-8"))
    serve(document["versions"][args.version], reattach=args.reattach)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
