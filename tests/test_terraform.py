"""Offline checks of terraform/: format, the provider's real schema, the invariants.

No registry and no provider binary: the schema comes from the committed extract
(tests/data/google_provider_schema.json, made by tools/tf_schema.py from the
prebuilt CDKTF/CDK Terrain bindings), the HCL from python-hcl2. The function zip
and the deploy guard are checked here too, since Terraform consumes both.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools import deploy_guard, package, tf_validate
from tools.tf_validate import Declared, Module, string_literal
from watchdog import methods

ROOT = Path(__file__).resolve().parent.parent
TERRAFORM = ROOT / "terraform"
EXAMPLE = TERRAFORM / "examples" / "basic"
SCHEMA = ROOT / "tests" / "data" / "google_provider_schema.json"
SCHEMAS = tf_validate.load_schema(SCHEMA)


@pytest.fixture(scope="module")
def module() -> Module:
    return tf_validate.load_module(TERRAFORM)


@pytest.fixture(scope="module")
def example() -> Module:
    return tf_validate.load_module(EXAMPLE)


def _block(item: Declared | dict[str, object], *path: str) -> dict[str, object]:
    """The first nested block along a path of block names."""
    body: dict[str, object] = item.body if isinstance(item, Declared) else item
    for name in path:
        blocks = body[name]
        assert isinstance(blocks, list) and blocks, f"no {name} block"
        body = blocks[0]
    return body


def _all_iam_grants(module: Module) -> list[Declared]:
    return [
        d
        for d in module.resources()
        if re.search(r"_iam_(member|binding|policy)$", d.type)
    ]


def _code_environment_names() -> set[str]:
    """WATCHDOG_* names the function's code reads (quoted literals only)."""
    names: set[str] = set()
    for path in (ROOT / "watchdog" / "config.py", ROOT / "watchdog" / "logs.py"):
        names |= set(re.findall(r"[\"'](WATCHDOG_[A-Z_]+)[\"']", path.read_text()))
    return names


# --- formatting -----------------------------------------------------------------------


def test_terraform_files_are_formatted(tmp_path: Path) -> None:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("no terraform binary on PATH: `terraform fmt -check` not run")
    # An empty CLI config and no version check: fmt needs neither; CI has no network.
    config = tmp_path / "terraformrc"
    config.write_text("")
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(config), "CHECKPOINT_DISABLE": "1"}
    result = subprocess.run(
        [binary, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the provider schema --------------------------------------------------------------


def test_schema_extract_is_small_and_covers_two_major_versions() -> None:
    majors = {version.split(".")[0] for version in SCHEMAS}
    assert SCHEMA.stat().st_size < 300_000
    assert {"6", "8"} <= majors


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _satisfies(version: str, constraint: str) -> bool:
    checks = {
        ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        "=": lambda a, b: a == b,
    }
    for term in constraint.split(","):
        operator, bound = re.match(r"\s*(>=|<=|>|<|=)?\s*([\d.]+)", term).groups()  # type: ignore[union-attr]
        if not checks[operator or "="](_version_tuple(version), _version_tuple(bound)):
            return False
    return True


@pytest.mark.parametrize("directory", [TERRAFORM, EXAMPLE], ids=["module", "example"])
def test_provider_range_is_bounded_and_covers_every_checked_schema(
    directory: Path,
) -> None:
    terraform_block = tf_validate.load_module(directory).terraform[0]
    google = _block(terraform_block, "required_providers")["google"]
    assert isinstance(google, dict)
    constraint = string_literal(google["version"])
    assert constraint is not None
    assert ">=" in constraint and "<" in constraint.replace("<=", "")
    for version in SCHEMAS:
        assert _satisfies(version, constraint), f"{version} outside {constraint}"


@pytest.mark.parametrize("version", sorted(SCHEMAS))
@pytest.mark.parametrize("directory", [TERRAFORM, EXAMPLE], ids=["module", "example"])
def test_configuration_matches_the_provider_schema(
    directory: Path, version: str
) -> None:
    problems = tf_validate.validate(directory, {version: SCHEMAS[version]})
    assert [str(p) for p in problems] == []


BROKEN_CASES = {
    "unknown-argument": (
        'resource "google_pubsub_topic" "t" {\n  name = "t"\n  colour = "blue"\n}\n',
        "colour: unsupported argument",
    ),
    "missing-required-argument": (
        'resource "google_pubsub_topic" "t" {\n  labels = {}\n}\n',
        "name: required argument is not set",
    ),
    "missing-required-nested-argument": (
        'resource "google_pubsub_subscription" "s" {\n  name = "s"\n  topic = "t"\n'
        '  push_config {\n    oidc_token {\n      audience = "a"\n    }\n  }\n}\n',
        "push_config.push_endpoint: required argument is not set",
    ),
    "unknown-type": (
        'resource "google_pubsub_topik" "t" {\n  name = "t"\n}\n',
        "has no resource type google_pubsub_topik",
    ),
    "block-written-as-argument": (
        'resource "google_pubsub_subscription" "s" {\n  name = "s"\n  topic = "t"\n'
        '  retry_policy = { minimum_backoff = "10s" }\n}\n',
        "retry_policy: is a block, not an argument",
    ),
    "unknown-dynamic-block": (
        'resource "google_pubsub_subscription" "s" {\n  name = "s"\n  topic = "t"\n'
        '  dynamic "dead_letter" {\n    for_each = []\n    content {}\n  }\n}\n',
        'dynamic "dead_letter": no such block',
    ),
    "unknown-attribute-reference": (
        'resource "google_pubsub_topic" "t" {\n  name = "t"\n}\n'
        'output "o" {\n  value = google_pubsub_topic.t.colour\n}\n',
        "google_pubsub_topic has no attribute or block colour",
    ),
    "computed-attribute-set": (
        'resource "google_service_account" "a" {\n  account_id = "abcdef"\n'
        '  email = "a@example.com"\n}\n',
        "email: is computed by the provider; it cannot be set",
    ),
    "undeclared-variable": (
        'resource "google_pubsub_topic" "t" {\n  name = var.missing\n}\n',
        "var.missing: reference to an undeclared name",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CASES), ids=str)
def test_schema_check_reports_a_broken_configuration(case: str, tmp_path: Path) -> None:
    text, expected = BROKEN_CASES[case]
    (tmp_path / "main.tf").write_text(text)
    problems = [str(p) for p in tf_validate.validate(tmp_path, SCHEMAS)]
    assert any(expected in problem for problem in problems), problems


def test_schema_check_reports_unknown_and_missing_arguments_together(
    tmp_path: Path,
) -> None:
    (tmp_path / "main.tf").write_text(
        'resource "google_cloud_scheduler_job" "tick" {\n'
        '  schedule = "* * * * *"\n  cadence = "fast"\n}\n'
    )
    problems = [str(p) for p in tf_validate.validate(tmp_path, SCHEMAS)]
    assert any("cadence: unsupported argument" in p for p in problems)
    assert any("name: required argument is not set" in p for p in problems)


def test_schema_check_accepts_meta_arguments_and_dynamic_blocks(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(
        'variable "topics" {\n  type = set(string)\n}\n'
        'resource "google_pubsub_topic" "t" {\n  for_each = var.topics\n'
        "  name = each.value\n  depends_on = []\n"
        "  lifecycle {\n    create_before_destroy = true\n  }\n}\n"
        'resource "google_pubsub_subscription" "s" {\n  count = 1\n  name = "s"\n'
        '  topic = "t"\n  dynamic "retry_policy" {\n    for_each = [1]\n'
        '    content {\n      minimum_backoff = "10s"\n    }\n  }\n}\n'
    )
    assert tf_validate.validate(tmp_path, SCHEMAS) == []


def test_example_passes_every_required_module_input(example: Module) -> None:
    assert tf_validate.check_module_calls(example) == []


# --- real terraform validate and terraform test, offline ------------------------------

TOOLS_PYTHON = Path(
    os.environ.get("WATCHDOG_TF_PYTHON", str(ROOT / ".venv-tf" / "bin" / "python"))
)
TF_TIMEOUT = 180


@pytest.fixture(scope="module")
def terraform_binary() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("no terraform binary on PATH: terraform validate/test not run")
    return binary


@pytest.fixture(scope="module")
def stub_python() -> Path:
    """The tooling interpreter that can run tools/tf_stub_provider.py."""
    probe = [str(TOOLS_PYTHON), "-c", "import tf.gen.tfplugin_pb2, grpc, cryptography"]
    try:
        subprocess.run(probe, capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        pytest.skip(
            f"{TOOLS_PYTHON} cannot run the stub provider (make tf-tools creates "
            ".venv-tf): terraform validate/test not run"
        )
    return TOOLS_PYTHON


def _mirror_workspace(root: Path, python: Path, version: str) -> dict[str, str]:
    """A copy of terraform/ and a CLI config that installs the stub as google VERSION.

    Everything Terraform writes (.terraform/, the lock file) lands in the copy,
    never in the repository.
    """
    plugin_dir = root / "mirror/registry.terraform.io/hashicorp/google" / version
    plugin = plugin_dir / "linux_amd64" / f"terraform-provider-google_v{version}"
    plugin.parent.mkdir(parents=True)
    plugin.write_text(
        "#!/bin/sh\n"
        f'exec "{python}" "{ROOT / "tools" / "tf_stub_provider.py"}" '
        f'--schema "{SCHEMA}" --version {version}\n'
    )
    plugin.chmod(0o755)
    config = root / "terraformrc"
    config.write_text(
        "disable_checkpoint = true\n"
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{root / "mirror"}"\n'
        '    include = ["registry.terraform.io/hashicorp/google"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n}\n'
    )
    shutil.copytree(
        TERRAFORM,
        root / "terraform",
        ignore=shutil.ignore_patterns(
            ".terraform", ".terraform.lock.hcl", "*.tfstate*"
        ),
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TF_", "CHECKPOINT"))
    }
    return {
        **env,
        "TF_CLI_CONFIG_FILE": str(config),
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
    }


def _terraform(binary: str, directory: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [binary, f"-chdir={directory}", *args, "-no-color"],
        capture_output=True,
        text=True,
        env=env,
        timeout=TF_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"terraform {args[0]}:\n{result.stdout}{result.stderr}"
    )
    return result.stdout


@pytest.mark.parametrize("version", sorted(SCHEMAS))
def test_terraform_validate_passes_against_the_stub_provider(
    version: str, tmp_path: Path, terraform_binary: str, stub_python: Path
) -> None:
    env = _mirror_workspace(tmp_path, stub_python, version)
    for directory in (tmp_path / "terraform", tmp_path / "terraform/examples/basic"):
        _terraform(
            terraform_binary, directory, env, "init", "-backend=false", "-input=false"
        )
        _terraform(terraform_binary, directory, env, "validate")
    lock = (tmp_path / "terraform" / ".terraform.lock.hcl").read_text()
    assert f'version     = "{version}"' in lock


def test_terraform_validate_rejects_what_the_schema_forbids(
    tmp_path: Path, terraform_binary: str, stub_python: Path
) -> None:
    version = max(SCHEMAS, key=_version_tuple)
    env = _mirror_workspace(tmp_path, stub_python, version)
    module = tmp_path / "terraform"
    (module / "broken.tf").write_text(
        'resource "google_pubsub_topic" "broken" {\n  name = "x"\n'
        '  colour = "blue"\n}\n'
        'output "broken" {\n  value = google_service_account.watchdog.emale\n}\n'
    )
    _terraform(terraform_binary, module, env, "init", "-backend=false", "-input=false")
    result = subprocess.run(
        [terraform_binary, f"-chdir={module}", "validate", "-json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=TF_TIMEOUT,
        check=False,
    )
    report = json.loads(result.stdout)
    details = [d["detail"] for d in report["diagnostics"]]
    assert report["valid"] is False
    assert any('"colour" is not expected' in d for d in details)
    assert any('named "emale"' in d for d in details)


@contextlib.contextmanager
def _reattached_stub(python: Path, version: str) -> Iterator[str]:
    """One long-lived stub provider; yields the TF_REATTACH_PROVIDERS value.

    `terraform test` would otherwise start a provider per operation (about 25
    Python start-ups for the suite in terraform/tests).
    """
    command = [
        str(python),
        str(ROOT / "tools" / "tf_stub_provider.py"),
        f"--schema={SCHEMA}",
        f"--version={version}",
        "--reattach",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("{"), "the stub provider did not start"
        yield line.strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_terraform_test_passes_with_a_mocked_provider(
    tmp_path: Path, terraform_binary: str, stub_python: Path
) -> None:
    version = max(SCHEMAS, key=_version_tuple)
    env = _mirror_workspace(tmp_path, stub_python, version)
    module = tmp_path / "terraform"
    _terraform(terraform_binary, module, env, "init", "-backend=false", "-input=false")
    with _reattached_stub(stub_python, version) as reattach:
        env["TF_REATTACH_PROVIDERS"] = reattach
        output = _terraform(terraform_binary, module, env, "test")
    assert re.search(r"Success! \d+ passed, 0 failed", output), output


# --- invariants: never public ---------------------------------------------------------


def test_function_ingress_is_internal_only(module: Module) -> None:
    function = module.resource("google_cloudfunctions2_function", "watchdog")
    service = _block(function, "service_config")
    assert string_literal(service["ingress_settings"]) == "ALLOW_INTERNAL_ONLY"


@pytest.mark.parametrize("directory", [TERRAFORM, EXAMPLE], ids=["module", "example"])
def test_no_iam_grant_names_a_public_member(directory: Path) -> None:
    grants = _all_iam_grants(tf_validate.load_module(directory))
    for grant in grants:
        members = f"{grant.body.get('member')} {grant.body.get('members')}"
        assert "allUsers" not in members and "allAuthenticatedUsers" not in members
        assert "public_members" not in members, grant.address


def test_no_authoritative_iam_resource(module: Module) -> None:
    # *_iam_binding and *_iam_policy own a whole role or policy: they would
    # fight the watchdog (and anyone else) on every apply.
    assert [
        g.address for g in _all_iam_grants(module) if not g.type.endswith("_iam_member")
    ] == []


def test_only_the_invoker_account_may_invoke_the_function(module: Module) -> None:
    invokers = [
        g for g in _all_iam_grants(module) if "run.invoker" in str(g.body.get("role"))
    ]
    assert [g.address for g in invokers] == [
        "google_cloud_run_v2_service_iam_member.invoker"
    ]
    grant = invokers[0].body
    assert grant["name"] == "${google_cloudfunctions2_function.watchdog.name}"
    assert grant["member"] == '"serviceAccount:${google_service_account.invoker.email}"'


# --- invariants: least privilege ------------------------------------------------------

FORBIDDEN_ROLE = re.compile(
    r"roles/(owner|editor|run\.admin|run\.developer|iam\.\w*[Aa]dmin|resourcemanager\.\w+)"
)


@pytest.mark.parametrize("directory", [TERRAFORM, EXAMPLE], ids=["module", "example"])
def test_no_broad_role_appears_anywhere(directory: Path) -> None:
    text = "\n".join(p.read_text() for p in directory.glob("*.tf"))
    assert FORBIDDEN_ROLE.findall(text) == []


def test_project_level_grants_are_the_audit_reader_and_the_state_grant(
    module: Module,
) -> None:
    # Two grants need the project: listing log entries (read-only), and the
    # watchdog's Firestore records, whose permissions Firestore checks on the
    # project. The second is allowed only with a condition naming the
    # watchdog's own database (see the state tests below).
    project_grants = [
        g for g in module.resources() if g.type.startswith("google_project_iam_")
    ]
    project_grants = [
        g for g in project_grants if g.type != "google_project_iam_custom_role"
    ]
    assert sorted(g.address for g in project_grants) == [
        "google_project_iam_member.audit_reader",
        "google_project_iam_member.state",
    ]
    grant = module.resource("google_project_iam_member", "audit_reader").body
    assert grant["role"] == "${google_project_iam_custom_role.audit_reader.id}"
    assert "condition" not in grant
    reader = module.resource("google_project_iam_custom_role", "audit_reader").body
    assert reader["permissions"] == ['"logging.logEntries.list"']


def test_state_grant_is_conditional_on_the_watchdogs_own_database(
    module: Module,
) -> None:
    grant = module.resource("google_project_iam_member", "state")
    assert grant.body["role"] == "${google_project_iam_custom_role.state.id}"
    assert (
        grant.body["member"]
        == '"serviceAccount:${google_service_account.watchdog.email}"'
    )
    expression = str(_block(grant, "condition")["expression"])
    assert "resource.name ==" in expression
    assert (
        "projects/${var.project_id}/databases/"
        "${google_firestore_database.state.name}" in expression
    )
    assert "||" not in expression and "startsWith" not in expression


def test_state_role_reads_and_writes_records_and_nothing_else(module: Module) -> None:
    role = module.resource("google_project_iam_custom_role", "state").body
    permissions = {string_literal(p) for p in role["permissions"]}  # type: ignore[attr-defined]
    assert permissions == {
        "datastore.databases.get",
        "datastore.entities.create",
        "datastore.entities.get",
        "datastore.entities.update",
    }


def test_state_database_is_the_watchdogs_own_and_reaches_the_function(
    module: Module,
) -> None:
    database = module.resource("google_firestore_database", "state").body
    assert database["name"] == "${var.name}"
    assert string_literal(database["type"]) == "FIRESTORE_NATIVE"
    assert database["location_id"] == "${var.region}"
    environment = str(module.locals["environment"])
    assert re.search(r'WATCHDOG_STATE\s*=\s*"firestore"', environment)
    assert "google_firestore_database.state.name" in environment


def test_run_role_holds_only_read_and_set_iam_permissions(module: Module) -> None:
    role = module.resource("google_project_iam_custom_role", "run_iam").body
    permissions = {string_literal(p) for p in role["permissions"]}  # type: ignore[attr-defined]
    assert permissions == {
        "run.services.get",
        "run.services.getIamPolicy",
        "run.services.setIamPolicy",
    }


def test_run_role_is_granted_on_each_watched_service_with_for_each(
    module: Module,
) -> None:
    grant = module.resource("google_cloud_run_v2_service_iam_member", "watched").body
    assert grant["for_each"] == "${local.watched}"
    assert "count" not in grant
    assert grant["role"] == "${google_project_iam_custom_role.run_iam.id}"
    assert (
        grant["member"] == '"serviceAccount:${google_service_account.watchdog.email}"'
    )


def test_run_role_is_granted_nowhere_else(module: Module) -> None:
    users = [
        d.address
        for d in module.declared
        if d.kind == "resource"
        and "google_project_iam_custom_role.run_iam" in str(d.body)
    ]
    assert users == ["google_cloud_run_v2_service_iam_member.watched"]


def test_function_runs_as_its_own_account(module: Module) -> None:
    function = module.resource("google_cloudfunctions2_function", "watchdog")
    service = _block(function, "service_config")
    assert (
        service["service_account_email"] == "${google_service_account.watchdog.email}"
    )


def test_topic_grants_are_scoped_to_one_topic_each(module: Module) -> None:
    grants = {
        g.name: g.body for g in module.resources("google_pubsub_topic_iam_member")
    }
    assert grants["sink_publisher"]["member"] == (
        "${google_logging_project_sink.audit.writer_identity}"
    )
    assert grants["sink_publisher"]["topic"] == "${google_pubsub_topic.audit.name}"
    assert grants["alert_publisher"]["topic"] == "${local.alert_topic}"
    assert all(g["role"] == '"roles/pubsub.publisher"' for g in grants.values())


def test_webhook_secret_access_is_on_that_secret_only(module: Module) -> None:
    grant = module.resource("google_secret_manager_secret_iam_member", "webhook").body
    assert grant["secret_id"] == "${var.alert_webhook_secret_id}"
    assert grant["role"] == '"roles/secretmanager.secretAccessor"'


# --- invariants: the audit feed and the tick ------------------------------------------


def _audit_filter(module: Module) -> str:
    text = string_literal(module.locals["audit_log_filter"])
    assert text is not None
    return text


def test_sink_filter_names_exactly_the_methods_the_code_handles(module: Module) -> None:
    named = re.findall(
        r'"(google\.cloud\.run\.v\d\.Services\.\w+)"', _audit_filter(module)
    )
    assert sorted(named) == sorted(methods.WATCHED_METHODS)
    assert len(named) == len(set(named))


def test_sink_filter_selects_the_admin_activity_log_of_cloud_run(
    module: Module,
) -> None:
    text = _audit_filter(module)
    assert f'protoPayload.serviceName="{methods.SERVICE_NAME}"' in text
    assert f'/logs/{methods.ACTIVITY_LOG_ID}"' in text
    # Only AND and the method alternatives: an OR elsewhere would widen the sink.
    assert text.count(" OR") == len(methods.WATCHED_METHODS) - 1


def test_sink_uses_the_filter_and_its_own_writer_identity(module: Module) -> None:
    sink = module.resource("google_logging_project_sink", "audit").body
    assert sink["filter"] == "${trimspace(local.audit_log_filter)}"
    assert sink["unique_writer_identity"] is True
    assert "google_pubsub_topic.audit.id" in str(sink["destination"])


def test_audit_events_reach_the_function_with_a_deliberate_retry_policy(
    module: Module,
) -> None:
    subscription = module.resource("google_pubsub_subscription", "audit_push")
    retry = _block(subscription, "retry_policy")
    assert string_literal(retry["minimum_backoff"]) and string_literal(
        retry["maximum_backoff"]
    )
    push = _block(subscription, "push_config")
    assert "service_config[0].uri" in str(push["push_endpoint"])
    token = _block(push, "oidc_token")
    assert token["service_account_email"] == "${google_service_account.invoker.email}"
    function = module.resource("google_cloudfunctions2_function", "watchdog")
    timeout = _block(function, "service_config")["timeout_seconds"]
    assert isinstance(timeout, int)
    assert subscription.body["ack_deadline_seconds"] > timeout  # type: ignore[operator]


def test_dead_letter_topic_is_optional_and_wired(module: Module) -> None:
    subscription = module.resource("google_pubsub_subscription", "audit_push").body
    dynamic = subscription["dynamic"]
    assert isinstance(dynamic, list) and '"dead_letter_policy"' in dynamic[0]
    topic = module.resource("google_pubsub_topic", "dead_letter").body
    assert topic["count"] == "${var.dead_letter_enabled ? 1 : 0}"


def test_schedule_is_every_minute(module: Module, example: Module) -> None:
    variable = module.variables["tick_schedule"]
    assert string_literal(variable["default"]) == "* * * * *"
    job = module.resource("google_cloud_scheduler_job", "tick").body
    assert job["schedule"] == "${var.tick_schedule}"
    call = next(d for d in example.declared if d.kind == "module")
    assert "tick_schedule" not in call.body


def test_scheduler_tick_is_an_authenticated_post_that_is_not_retried(
    module: Module,
) -> None:
    job = module.resource("google_cloud_scheduler_job", "tick")
    target = _block(job, "http_target")
    assert string_literal(target["http_method"]) == "POST"
    assert _block(target, "oidc_token")["service_account_email"] == (
        "${google_service_account.invoker.email}"
    )
    assert _block(job, "retry_config")["retry_count"] == 0


def test_function_is_gen2_python312_scaled_to_zero(module: Module) -> None:
    function = module.resource("google_cloudfunctions2_function", "watchdog")
    build = _block(function, "build_config")
    assert string_literal(build["runtime"]) == "python312"
    entry_point = string_literal(build["entry_point"])
    assert re.search(rf"^def {entry_point}\(", (ROOT / "main.py").read_text(), re.M)
    assert _block(function, "service_config")["min_instance_count"] == 0


def test_source_object_name_changes_with_the_zip(module: Module) -> None:
    source = module.resource("google_storage_bucket_object", "source").body
    assert "local.source_md5" in str(source["name"])
    assert "filemd5(local.source_archive)" in str(module.locals["source_md5"])


# --- invariants: settings and secrets -------------------------------------------------


def _environment_names(module: Module) -> set[str]:
    return set(
        re.findall(r"\b(WATCHDOG_[A-Z_]+)\s*=", str(module.locals["environment"]))
    )


def test_every_environment_variable_set_is_one_the_code_reads(module: Module) -> None:
    function = module.resource("google_cloudfunctions2_function", "watchdog")
    secret_keys = set(re.findall(r"WATCHDOG_[A-Z_]+", str(function.body)))
    set_names = _environment_names(module) | secret_keys
    assert set_names, "found no WATCHDOG_* settings in main.tf"
    assert set_names <= _code_environment_names()


def test_required_and_identity_settings_are_set(module: Module) -> None:
    assert {"WATCHDOG_SERVICES", "WATCHDOG_SELF_PRINCIPAL", "WATCHDOG_MODE"} <= (
        _environment_names(module)
    )


def test_webhook_url_comes_only_from_secret_manager(module: Module) -> None:
    assert "WATCHDOG_ALERT_WEBHOOK_URL" not in _environment_names(module)
    function = module.resource("google_cloudfunctions2_function", "watchdog")
    service = _block(function, "service_config")
    dynamic = service["dynamic"]
    assert isinstance(dynamic, list)
    secret = dynamic[0]['"secret_environment_variables"']
    content = _block(secret, "content")
    assert string_literal(content["key"]) == "WATCHDOG_ALERT_WEBHOOK_URL"


SECRET_NAME = re.compile(r"(url|password|token|credential|webhook)(?!.*_id$)")


@pytest.mark.parametrize("directory", [TERRAFORM, EXAMPLE], ids=["module", "example"])
def test_no_secret_is_a_plain_variable(directory: Path) -> None:
    for name, variable in tf_validate.load_module(directory).variables.items():
        if SECRET_NAME.search(name):
            assert variable.get("sensitive") is True, (
                f"variable {name} must be sensitive"
            )


def test_no_webhook_url_is_written_in_any_file() -> None:
    paths = [*TERRAFORM.rglob("*.tf"), TERRAFORM / "terraform.tfvars.example"]
    for path in paths:
        assert not re.search(
            r"https://hooks\.|chat\.googleapis\.com/v1/spaces", path.read_text()
        )


# --- invariants: variables and outputs ------------------------------------------------


@pytest.mark.parametrize("directory", [TERRAFORM, EXAMPLE], ids=["module", "example"])
def test_every_variable_is_typed_and_described(directory: Path) -> None:
    for name, variable in tf_validate.load_module(directory).variables.items():
        assert "type" in variable, name
        assert string_literal(variable.get("description")), name


@pytest.mark.parametrize(
    "name",
    [
        "project_id",
        "region",
        "watched_services",
        "name",
        "mode",
        "alert_format",
        "tick_schedule",
        "log_level",
        "public_members",
        "alert_webhook_secret_id",
    ],
)
def test_constrained_variables_are_validated(module: Module, name: str) -> None:
    assert "validation" in module.variables[name]


def test_every_output_is_described(module: Module) -> None:
    for name, output in module.outputs.items():
        assert string_literal(output.get("description")), name


# --- monitoring -----------------------------------------------------------------------


def test_heartbeat_metric_counts_the_functions_heartbeat_records(
    module: Module,
) -> None:
    metric = module.resource("google_logging_metric", "heartbeat").body
    text = string_literal(metric["filter"])
    assert text is not None
    assert "jsonPayload.heartbeat=true" in text
    assert 'resource.type="cloud_run_revision"' in text
    assert "google_cloudfunctions2_function.watchdog.name" in text


def test_heartbeat_alert_fires_on_absence_across_revisions(module: Module) -> None:
    policy = module.resource("google_monitoring_alert_policy", "heartbeat")
    absent = _block(policy, "conditions", "condition_absent")
    assert "google_logging_metric.heartbeat.name" in str(absent["filter"])
    assert (
        string_literal(_block(absent, "aggregations")["cross_series_reducer"])
        == "REDUCE_SUM"
    )


# --- the deploy guard -----------------------------------------------------------------


def test_deploy_guard_names_every_unset_required_variable(tmp_path: Path) -> None:
    shutil.copy(TERRAFORM / "variables.tf", tmp_path)
    missing = deploy_guard.missing_variables(tmp_path, {})
    assert missing == ["project_id", "region", "watched_services"]


def test_deploy_guard_accepts_the_filled_in_example(tmp_path: Path) -> None:
    shutil.copy(TERRAFORM / "variables.tf", tmp_path)
    shutil.copy(TERRAFORM / "terraform.tfvars.example", tmp_path / "terraform.tfvars")
    assert deploy_guard.missing_variables(tmp_path, {}) == []


def test_deploy_guard_accepts_tf_var_environment(tmp_path: Path) -> None:
    shutil.copy(TERRAFORM / "variables.tf", tmp_path)
    environ = {
        "TF_VAR_project_id": "my-project",
        "TF_VAR_region": "europe-west1",
        "TF_VAR_watched_services": '["projects/p-123456/locations/r-a1/services/a"]',
    }
    assert deploy_guard.missing_variables(tmp_path, environ) == []


def test_deploy_guard_exits_2_with_instructions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(TERRAFORM / "variables.tf", tmp_path)
    for name in list(os.environ):
        if name.startswith("TF_VAR_"):
            del os.environ[name]
    assert deploy_guard.main([str(tmp_path)]) == 2
    message = capsys.readouterr().err
    assert "project_id, region, watched_services" in message
    assert "terraform.tfvars.example" in message


# --- the function zip -----------------------------------------------------------------


def _fake_repository(root: Path) -> None:
    for name in (
        "main.py",
        "requirements.txt",
        "watchdog/__init__.py",
        "watchdog/config.py",
        "watchdog/gateways/run.py",
        "watchdog/sandbox/__init__.py",
        "watchdog/sandbox/server.py",
        "watchdog/py.typed",
        "watchdog/__pycache__/config.cpython-311.pyc",
        "tests/test_x.py",
        ".venv/lib/site.py",
        "README.md",
    ):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {name}\n")


def test_zip_holds_exactly_the_function_sources(tmp_path: Path) -> None:
    _fake_repository(tmp_path / "repo")
    path = package.build_zip(tmp_path / "repo", tmp_path / "function.zip")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert names == [
        "main.py",
        "requirements.txt",
        "watchdog/__init__.py",
        "watchdog/config.py",
        "watchdog/gateways/run.py",
    ]


def test_zip_of_this_repository_ships_the_package_without_sandbox(
    tmp_path: Path,
) -> None:
    path = package.build_zip(ROOT, tmp_path / "function.zip")
    expected = {"main.py", "requirements.txt"} | {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "watchdog").rglob("*.py")
        if "sandbox" not in p.relative_to(ROOT).parts
    }
    with zipfile.ZipFile(path) as archive:
        assert set(archive.namelist()) == expected


def test_zip_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    _fake_repository(tmp_path / "repo")
    first = package.build_zip(tmp_path / "repo", tmp_path / "a.zip").read_bytes()
    os.utime(tmp_path / "repo" / "main.py", (0, 0))
    second = package.build_zip(tmp_path / "repo", tmp_path / "b.zip").read_bytes()
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()


def test_zip_entries_carry_a_fixed_time_and_mode(tmp_path: Path) -> None:
    _fake_repository(tmp_path / "repo")
    path = package.build_zip(tmp_path / "repo", tmp_path / "function.zip")
    with zipfile.ZipFile(path) as archive:
        for entry in archive.infolist():
            assert entry.date_time == (1980, 1, 1, 0, 0, 0)
            assert entry.external_attr >> 16 == 0o100644


def test_readme_documents_every_input_and_output(module: Module) -> None:
    readme = (TERRAFORM / "README.md").read_text()
    undocumented = [
        name
        for name in [*module.variables, *module.outputs]
        if f"| `{name}` |" not in readme
    ]
    assert undocumented == []
