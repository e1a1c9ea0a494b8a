"""Terraform, the topology file, the services, their Dockerfiles and cloudbuild.yaml agree.

The for_each maps of topology.tf come from locals.tf; `mirror_locals` computes the same maps from
infra/events.yaml in Python (asserted equal to `terraform console`'s evaluation when a terraform
binary is present), so "every topic and subscription exists in Terraform" is checked on the names
Terraform will really create, not on a copy of them.
"""

from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from shared.settings import Settings
from shared.topology import TOPOLOGY_FILE, load_topology
from tests.infra.images import (
    external_distributions,
    installed_closure,
    module_file,
    reachable,
    read_requirements,
)
from tests.infra.tfcommon import MODULE_DIR, REPO_ROOT, TEST_VARS, blocks, terraform_console, unquote

CLOUDBUILD = REPO_ROOT / "cloudbuild.yaml"
SERVICES_DIR = REPO_ROOT / "services"
SERVICE_DOCKERFILE = SERVICES_DIR / "Dockerfile"
CI_DOCKERFILE = REPO_ROOT / "infra" / "cloudbuild" / "ci.Dockerfile"
MODEL_SERVER = "model-server"
MODEL_SERVER_MODULE = "services.forecast.model_server"

# Which settings need a cloud value: a backend selector (its default is the local backend), a secret
# (its default is a local development value), a Google Cloud or push-auth id, or anything unset by
# default. Tunables with a default (batch sizes, timeouts, tariffs) keep their default in the cloud.
CLOUD_SENSITIVE = re.compile(
    r"_backend$|^gcp_|^bq_location$|_dataset$|^vertex_|^model_bucket$|^push_|^fivetran_|^home$"
)
# Settings matching the rule above that still need no cloud value, each with the reason.
NOT_SET_IN_CLOUD = {
    "bigquery_api_endpoint": "points the client at bqemulator in tests; unset means the real API",
    "simulator_api_key": "the simulator is the local stand-in for the vendor API",
    "bus_min_backoff_s": "local dispatcher override; Pub/Sub takes backoff from events.yaml via topology.tf",
    "bus_max_backoff_s": "local dispatcher override (see bus_min_backoff_s)",
    "bus_max_delivery_attempts": "local dispatcher override (see bus_min_backoff_s)",
    "bus_ack_deadline_s": "local dispatcher override (see bus_min_backoff_s)",
    "push_max_body_bytes": "a request body limit (shared/bodies.py) whose default holds in the cloud too",
}


def needs_cloud_value(field: str) -> bool:
    info = Settings.model_fields[field]
    secret = info.annotation is SecretStr
    return (
        secret or info.default is None or bool(CLOUD_SENSITIVE.search(field))
    ) and field not in NOT_SET_IN_CLOUD


# Distributions an image needs that no import names: the server runtime and BigQuery's dtypes.
RUNTIME_ONLY = {"functions-framework", "gunicorn", "db-dtypes"}


# --- the for_each maps, evaluated -------------------------------------------------------------------


def mirror_locals(raw: dict[str, Any], variables: dict[str, str]) -> dict[str, Any]:
    """locals.tf's topology expressions, in Python."""
    dead_letter = raw["dead_letter"]
    push = {
        name: {
            **{k: sub[k] for k in ("topic", "service", "path", "ack_deadline_seconds")},
            **{k: sub[k] for k in ("min_backoff_seconds", "max_backoff_seconds", "max_delivery_attempts")},
            "dead_letter_topic": f"{name}{dead_letter['topic_suffix']}",
        }
        for name, sub in raw["subscriptions"].items()
    }
    images = [*sorted(raw["services"]), MODEL_SERVER]
    registry = f"{variables['region']}-docker.pkg.dev/{variables['project_id']}/{variables['prefix']}"
    return {
        "topics": raw["topics"],
        "push_subscriptions": push,
        "dead_letter_topics": {
            sub["dead_letter_topic"]: {
                "source_subscription": name,
                "pull_subscription": f"{name}{dead_letter['subscription_suffix']}",
            }
            for name, sub in push.items()
        },
        "push_targets": sorted({sub["service"] for sub in push.values()}),
        "service_topics": {
            service: sorted(
                t for t, topic in raw["topics"].items() if topic["publisher"].split(".")[1] == service
            )
            for service in raw["services"]
        },
        "images": {name: f"{registry}/{name}" for name in images},
        "push_audience": {service: f"{variables['prefix']}-{service}-push" for service in raw["services"]},
    }


@pytest.fixture(scope="module")
def planned(evaluated_locals: dict[str, Any] | None) -> dict[str, Any]:
    mirrored = mirror_locals(yaml.safe_load(TOPOLOGY_FILE.read_text()), TEST_VARS)
    if evaluated_locals is not None:
        for key, value in mirrored.items():
            assert evaluated_locals[key] == value, f"locals.tf `{key}` differs from the Python mirror"
    return mirrored


def test_every_topic_and_subscription_of_the_topology_exists_in_terraform(
    planned: dict[str, Any], resources: dict[str, Any]
) -> None:
    topology = load_topology()
    for_each = {name: unquote(body["for_each"]) for name, body in resources.items() if "for_each" in body}
    assert for_each["google_pubsub_topic.topic"] == "${local.topics}"
    assert for_each["google_pubsub_subscription.push"] == "${local.push_subscriptions}"
    assert for_each["google_pubsub_topic.dead_letter"] == "${local.dead_letter_topics}"
    assert for_each["google_pubsub_subscription.dead_letter"] == "${local.dead_letter_topics}"
    assert resources["google_pubsub_topic.topic"]["name"] == "${each.key}"
    assert resources["google_pubsub_subscription.push"]["name"] == "${each.key}"
    assert resources["google_pubsub_subscription.dead_letter"]["name"] == "${each.value.pull_subscription}"

    assert set(planned["topics"]) == set(topology.topics)
    assert set(planned["push_subscriptions"]) == set(topology.subscriptions)
    assert set(planned["dead_letter_topics"]) == {
        topology.dead_letter_topic(s) for s in topology.subscriptions
    }
    pulls = {d["pull_subscription"] for d in planned["dead_letter_topics"].values()}
    assert pulls == {f"{s}{topology.dead_letter.subscription_suffix}" for s in topology.subscriptions}


def test_push_subscriptions_carry_the_topology_settings_oidc_retry_and_dead_letter(
    planned: dict[str, Any], resources: dict[str, Any]
) -> None:
    push = resources["google_pubsub_subscription.push"]
    config = push["push_config"][0]
    assert unquote(config["push_endpoint"]).endswith("${each.value.path}")
    assert "google_cloud_run_v2_service.service[each.value.service].uri" in config["push_endpoint"]
    oidc = config["oidc_token"][0]
    assert oidc["service_account_email"] == "${google_service_account.push.email}"
    assert oidc["audience"] == "${local.push_audience[each.value.service]}"
    assert unquote(push["retry_policy"][0]["minimum_backoff"]) == "${each.value.min_backoff_seconds}s"
    assert unquote(push["retry_policy"][0]["maximum_backoff"]) == "${each.value.max_backoff_seconds}s"
    assert push["dead_letter_policy"][0]["max_delivery_attempts"] == "${each.value.max_delivery_attempts}"
    assert push["ack_deadline_seconds"] == "${each.value.ack_deadline_seconds}"
    for name, sub in load_topology().subscriptions.items():
        evaluated = planned["push_subscriptions"][name]
        assert evaluated["min_backoff_seconds"] == sub.min_backoff_seconds
        assert evaluated["max_backoff_seconds"] == sub.max_backoff_seconds
        assert evaluated["max_delivery_attempts"] == sub.max_delivery_attempts
        assert evaluated["path"] == sub.path
        assert evaluated["service"] in planned["push_targets"]


def test_no_subscription_can_redeliver_a_push_its_service_is_still_working_on(
    evaluated_locals: dict[str, Any] | None, resources: dict[str, Any]
) -> None:
    """Pub/Sub redelivers a push unanswered after the ack deadline; Cloud Run cuts a request at its
    timeout. ack deadline >= timeout means a push is always answered (or cut) before redelivery."""
    template = resources["google_cloud_run_v2_service.service"]["template"][0]
    assert unquote(template["timeout"]) == "${local.service_timeout_seconds[each.key]}s"
    if evaluated_locals is None:
        pytest.skip("no terraform binary: service_timeout_seconds not evaluated")
    timeouts = evaluated_locals["service_timeout_seconds"]
    for name, sub in load_topology().subscriptions.items():
        assert sub.ack_deadline_seconds >= timeouts[sub.service], (
            f"{name}: ack deadline < {sub.service} timeout"
        )
    # the measured work fits: forecast 2.05 s, anomaly 13.7-33.7 s per 1,000-device event (infra/README.md)
    assert min(timeouts.values()) >= 60


def test_sizes_and_concurrency_come_from_the_measured_needs(evaluated_locals: dict[str, Any] | None) -> None:
    """One event per instance where an event holds the fleet's history in memory (measured peaks:
    forecast 675 MB, anomaly 1,830 MB for 1,000 devices); memory at least twice the peak."""
    if evaluated_locals is None:
        pytest.skip("no terraform binary: services not evaluated")
    services = evaluated_locals["services"]
    gib = {name: float(cfg["memory"].removesuffix("Gi")) for name, cfg in services.items()}
    assert services["forecast"]["concurrency"] == services["anomaly"]["concurrency"] == 1
    assert gib["forecast"] * 1024 >= 2 * 675
    assert gib["anomaly"] * 1024 >= 2 * 1830
    assert int(services["anomaly"]["cpu"]) >= 2  # Cloud Run needs 2 vCPU above 4 GiB; and 13.7 s on 1


def test_only_the_webhook_service_runs_without_invoker_iam_and_nothing_grants_all_users(
    evaluated_locals: dict[str, Any] | None, resources: dict[str, Any]
) -> None:
    policy = (MODULE_DIR.parent.parent / "policies" / "no_public_invoker.py").read_text()
    [webhook_service] = re.findall(r'^WEBHOOK_SERVICE = "([a-z]+)"', policy, re.MULTILINE)
    service = resources["google_cloud_run_v2_service.service"]
    assert service["invoker_iam_disabled"] == "${each.key == local.webhook_service}"
    text = "\n".join(path.read_text() for path in MODULE_DIR.glob("*.tf"))
    grants = [
        body.get("member") for name, body in resources.items() if name.endswith(("_iam_member", "_binding"))
    ]
    assert not [m for m in grants if "allUsers" in str(m) or "allAuthenticatedUsers" in str(m)]
    assert not re.search(r'members?\s*=\s*\[?\s*"all(Authenticated)?Users"', text)
    if evaluated_locals is not None:
        assert evaluated_locals["webhook_service"] == webhook_service == "ingest"
        # the public service verifies push signatures itself; the IAM-protected ones read forwarded claims
        assert evaluated_locals["push_auth"] == {
            s: ("oidc" if s == webhook_service else "cloud_run") for s in load_topology().services
        }


def test_runtime_accounts_get_predict_only_not_aiplatform_user(resources: dict[str, Any]) -> None:
    role = resources["google_project_iam_custom_role.predict"]
    assert [unquote(p) for p in role["permissions"]] == ["aiplatform.endpoints.predict"]
    grant = resources["google_project_iam_member.vertex_predict"]
    assert grant["role"] == "${google_project_iam_custom_role.predict.name}"
    runtime_roles = [
        unquote(body.get("role", ""))
        for name, body in resources.items()
        if name.endswith("_iam_member") and "google_service_account.run" in str(body.get("member", ""))
    ]
    assert "roles/aiplatform.user" not in runtime_roles


def test_fivetran_gets_bigquery_user_whenever_its_account_is_known(resources: dict[str, Any]) -> None:
    for name in (
        "google_project_iam_member.fivetran_bigquery_user",
        "google_bigquery_dataset_iam_member.fivetran_writer",
    ):
        assert unquote(resources[name]["count"]) == "${var.fivetran.service_account == null ? 0 : 1}"
    assert (
        unquote(resources["google_project_iam_member.fivetran_bigquery_user"]["role"])
        == "roles/bigquery.user"
    )


def test_the_fivetran_webhook_stays_off_until_switched_on_after_the_first_build(
    resources: dict[str, Any],
) -> None:
    assert resources["fivetran_webhook.sync_end"]["active"] == "${var.fivetran.webhook_active}"
    variables = (MODULE_DIR / "variables.tf").read_text()
    assert re.search(r"webhook_active\s*=\s*optional\(bool, false\)", variables)


def test_the_build_trigger_uses_a_2nd_gen_repository_in_its_own_region(resources: dict[str, Any]) -> None:
    trigger = resources["google_cloudbuild_trigger.deploy"]
    assert "github" not in trigger, "1st-gen github {} needs the repository connected in the trigger's region"
    event = trigger["repository_event_config"][0]
    assert event["repository"] == "${google_cloudbuildv2_repository.source[0].id}"
    repository = resources["google_cloudbuildv2_repository.source"]
    assert trigger["location"] == repository["location"] == "${var.region}"
    assert "/locations/${var.region}/connections/" in repository["parent_connection"]


def test_vertex_endpoint_ids_fit_createendpoint_numeric_rule(module: dict[str, Any]) -> None:
    """CreateEndpoint: a numeric id has at most 9 digits and no leading zero."""
    variable = blocks(module["variables.tf"], "variable")["vertex_endpoint_id"]
    default = unquote(variable["default"])
    assert re.fullmatch(r"[1-9][0-9]{0,8}", default)
    assert yaml.safe_load(CLOUDBUILD.read_text())["substitutions"]["_ENDPOINT_ID"] == default
    rule = unquote(variable["validation"][0]["condition"])
    assert "^[1-9][0-9]{0,8}$" in rule


def test_each_service_publishes_only_to_the_topics_events_yaml_names_it_publisher_of(
    planned: dict[str, Any],
) -> None:
    for name, topic in load_topology().topics.items():
        service = topic.publisher.split(".")[1]
        assert name in planned["service_topics"][service]
    assert sum(len(t) for t in planned["service_topics"].values()) == len(load_topology().topics)


# --- services, Dockerfiles, build steps --------------------------------------------------------------


def service_folders() -> list[str]:
    return sorted(p.parent.name for p in SERVICES_DIR.glob("*/__init__.py"))


def cloudbuild() -> dict[str, Any]:
    return yaml.safe_load(CLOUDBUILD.read_text())


def dockerfile_cmd(path: Path) -> list[str]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("CMD ")]
    assert len(lines) == 1, f"{path}: expected one CMD"
    return yaml.safe_load(lines[0][4:])


def test_every_service_folder_has_a_cloud_run_service_a_dockerfile_and_build_steps(
    module_locals: dict[str, Any],
) -> None:
    folders = service_folders()
    assert folders == sorted(load_topology().services), "services/ and events.yaml `services:` differ"
    assert sorted(module_locals["service_needs"]) == folders, "locals.tf service_needs misses a service"
    steps = {step["id"] for step in cloudbuild()["steps"]}
    # One parameterised definition for every service image: nothing per service can drift.
    assert not list(SERVICES_DIR.glob("*/Dockerfile")), "service images are built from services/Dockerfile"
    text = SERVICE_DOCKERFILE.read_text()
    assert dockerfile_cmd(SERVICE_DOCKERFILE) == ["functions-framework", "--host", "0.0.0.0"]  # noqa: S104
    # functions-framework reads --source/--target from these, so the image starts like the local runtime
    assert "FUNCTION_SOURCE=services/${SERVICE}/main.py" in text
    assert "FUNCTION_TARGET=app" in text
    assert "-r services/${SERVICE}/requirements.txt" in text
    by_id = {step["id"]: step for step in cloudbuild()["steps"]}
    for service in folders:
        assert {f"build-{service}", f"push-{service}", f"deploy-{service}"} <= steps, f"{service} build steps"
        command = " ".join(map(str, by_id[f"build-{service}"]["args"]))
        assert f"docker build -f services/Dockerfile --build-arg SERVICE={service} " in command
    model_server = SERVICES_DIR / "forecast" / "Dockerfile.model-server"
    assert dockerfile_cmd(model_server) == ["python", "-m", MODEL_SERVER_MODULE]
    assert {f"build-{MODEL_SERVER}", f"push-{MODEL_SERVER}", "deploy-model"} <= steps
    assert {"test", "fivetran-deploy"} <= steps


# What each Makefile tool needs on the machine, and the Debian package (or install) providing it.
MAKE_TEST_TOOLS = {"make": "make", "git": "git", "npm": "npm", "chromium": "chromium", "tar": None}
EMULATOR_TOOLS = {
    "java": "default-jre-headless",
    "gcloud": "google-cloud-cli",
    "pubsub": "google-cloud-cli-pubsub-emulator",
}


def test_the_cloud_build_test_step_runs_make_test_in_an_image_with_every_tool_it_calls() -> None:
    """#20: `make test` in python:3.11-slim failed at `npm`; the step now runs in ci.Dockerfile's image."""
    steps = {step["id"]: step for step in cloudbuild()["steps"]}
    ci, test = steps["ci-image"], steps["test"]
    assert ci["args"][:3] == ["build", "-f", "infra/cloudbuild/ci.Dockerfile"]
    assert test["name"] == ci["args"][ci["args"].index("-t") + 1]
    assert test["waitFor"] == ["ci-image"]
    assert test["args"] == ["-c", "make test"], "the same command as locally, never a weaker target"
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe_words = {
        w for line in makefile.splitlines() if line.startswith("\t") for w in re.split(r"[\s;&|()]+", line)
    }
    installed = CI_DOCKERFILE.read_text()
    for tool, package in MAKE_TEST_TOOLS.items():
        if tool in recipe_words or tool == "make" or (tool == "chromium" and "/usr/bin/chromium" in makefile):
            assert package is None or re.search(rf"\b{package}\b", installed), f"ci image lacks {tool}"
    for (
        tool,
        package,
    ) in EMULATOR_TOOLS.items():  # the emulator tests (tests/emulator*.py, gcloud beta emulators)
        assert re.search(rf"\b{package}\b", installed), f"ci image lacks {tool}"
    assert "terraform" in installed


def test_a_retried_build_neither_rebuilds_nor_repushes_an_existing_immutable_tag() -> None:
    steps = {step["id"]: step for step in cloudbuild()["steps"]}
    for step_id, step in steps.items():
        if step_id.startswith(("build-", "push-")):
            command = step["args"][1]
            image = re.search(r'docker manifest inspect "([^"]+)"', command)
            assert image, f"{step_id} does not check whether its tag exists"
            assert command.index("manifest inspect") < command.index("else docker ")


def test_the_model_is_deployed_only_when_its_version_or_server_code_changed() -> None:
    script = (REPO_ROOT / "infra" / "cloudbuild" / "deploy-model.sh").read_text()
    assert 'deployment="${display_name}-${newest}-${CODE_HASH:0:8}"' in script
    assert script.index('grep -qxF "${deployment}"') < script.index("gcloud ai models upload")
    step = {s["id"]: s for s in cloudbuild()["steps"]}["deploy-model"]
    assert "CODE_HASH=" in step["args"][1]
    assert "services/forecast/*.py" in step["args"][1]


def test_image_builds_run_in_parallel_after_the_tests() -> None:
    steps = {step["id"]: step for step in cloudbuild()["steps"]}
    builds = [s for s in steps if s.startswith("build-")]
    assert len(builds) == len(service_folders()) + 1
    for build in builds:
        assert steps[build]["waitFor"] == ["test"], f"{build} must wait for the tests only"


def test_images_named_in_cloudbuild_match_terraform(planned: dict[str, Any], module: dict[str, Any]) -> None:
    build = cloudbuild()
    substitutions = {
        "${_REGION}": TEST_VARS["region"],
        "$PROJECT_ID": TEST_VARS["project_id"],
        "${_REPOSITORY}": TEST_VARS["prefix"],  # Terraform: repository_id = var.prefix
    }
    named: dict[str, set[str]] = {}
    for step in build["steps"]:
        for arg in step.get("args", []) + step.get("env", []):
            for ref in re.findall(r"\$\{_REGION\}-docker\.pkg\.dev/\S+?:\$SHORT_SHA", str(arg)):
                image = ref.removesuffix(":$SHORT_SHA")
                for placeholder, value in substitutions.items():
                    image = image.replace(placeholder, value)
                named.setdefault(image.rsplit("/", 1)[1], set()).add(image)
    assert {name: {image} for name, image in planned["images"].items()} == named
    defaults = build["substitutions"]
    variables = blocks(module["variables.tf"], "variable")
    assert defaults["_REPOSITORY"] == defaults["_PREFIX"] == unquote(variables["prefix"]["default"])
    assert defaults["_REGION"] == unquote(variables["region"]["default"])
    assert defaults["_ENDPOINT_ID"] == unquote(variables["vertex_endpoint_id"]["default"])


def test_the_build_trigger_passes_every_substitution_cloudbuild_uses(resources: dict[str, Any]) -> None:
    text = CLOUDBUILD.read_text()
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", text))
    passed = set(resources["google_cloudbuild_trigger.deploy"]["substitutions"])
    assert used == passed
    assert used <= set(cloudbuild()["substitutions"])


# --- settings each service reads in the cloud ---------------------------------------------------------


def service_env(module_locals: dict[str, Any], service: str) -> dict[str, Any]:
    """A service's own settings (service_needs.<service>.env), following one `local.<name>` reference."""
    env = module_locals["service_needs"][service]["env"]
    if isinstance(env, str):
        reference = re.fullmatch(r"\$\{local\.([a-z_]+)\}", unquote(env))
        assert reference, f"service_needs.{service}.env: expected a map or local.<name>, got {env}"
        env = module_locals[reference.group(1)]
    return dict(env)


def provided_env(module_locals: dict[str, Any], service: str) -> set[str]:
    run = (MODULE_DIR / "run.tf").read_text()
    common = set(module_locals["common_env"]) | set(re.findall(r"(GRIDSIGHT_[A-Z_]+)\s*=", run))
    own = set(service_env(module_locals, service))
    return common | own | set(module_locals["service_needs"][service]["secrets"])


def settings_read(modules: dict[str, Path]) -> set[str]:
    """Settings fields read as `<...>settings.<field>` anywhere in `modules`."""
    fields = set(Settings.model_fields)
    read = set()
    for path in modules.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in fields:
                owner = node.value
                name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                if name in {"settings", "_settings"}:
                    read.add(node.attr)
    return read


@pytest.mark.parametrize("service", service_folders())
def test_every_setting_a_service_reads_is_provided_by_its_cloud_run_env_or_secret(
    service: str, module_locals: dict[str, Any]
) -> None:
    entry = f"services.{service}.main"
    if module_file(entry) is None:
        pytest.skip(f"services/{service}/main.py does not exist yet")
    modules, _ = reachable(entry)
    provided = provided_env(module_locals, service)
    missing = sorted(
        field
        for field in settings_read(modules)
        if f"GRIDSIGHT_{field.upper()}" not in provided and needs_cloud_value(field)
    )
    assert not missing, (
        f"{service} reads settings its Cloud Run service does not set: {missing}. Add GRIDSIGHT_<NAME> to "
        "common_env or service_needs.secrets in infra/terraform/modules/gridsight/locals.tf (or, if the "
        "local default is right in the cloud too, to NOT_SET_IN_CLOUD here with the reason)."
    )


def test_the_model_server_image_listens_on_all_interfaces_for_vertex() -> None:
    """Vertex reaches the container from outside it; the local default (127.0.0.1) would be unreachable."""
    if module_file(MODEL_SERVER_MODULE) is None:
        pytest.skip("the model server does not exist yet")
    modules, _ = reachable(MODEL_SERVER_MODULE)
    assert "model_server_host" in settings_read(modules)
    dockerfile = (SERVICES_DIR / "forecast" / "Dockerfile.model-server").read_text()
    assert re.search(r"GRIDSIGHT_MODEL_SERVER_HOST=0\.0\.0\.0\b", dockerfile)


def test_secrets_are_referenced_and_latest_resolves_on_the_first_apply(resources: dict[str, Any]) -> None:
    """Cloud Run refuses a revision whose `latest` secret version does not exist, so every secret
    gets a placeholder version before the services; the placeholder is the public constant the code
    refuses (shared/settings.py), never a value anyone could use."""
    from shared.settings import SECRET_PLACEHOLDER

    run = (MODULE_DIR / "run.tf").read_text()
    assert "secret_key_ref" in run
    assert 'version = "latest"' in run
    versions = [name for name in resources if name.startswith("google_secret_manager_secret_version.")]
    assert versions == ["google_secret_manager_secret_version.placeholder"]
    placeholder = resources["google_secret_manager_secret_version.placeholder"]
    assert placeholder["for_each"] == "${local.secrets}"
    assert placeholder["secret_data"] == "${local.secret_placeholder}"
    locals_text = (MODULE_DIR / "locals.tf").read_text()
    assert f'secret_placeholder = "{SECRET_PLACEHOLDER}"' in locals_text
    depends = resources["google_cloud_run_v2_service.service"]["depends_on"]
    assert "${google_secret_manager_secret_version.placeholder}" in depends


# --- what each image installs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    name: str
    entry: str  # the module its CMD starts
    requirements: Path
    dockerfile: Path
    service: str | None = None  # the SERVICE build argument of services/Dockerfile

    def reachable(self) -> tuple[dict[str, Path], set[str]]:
        if module_file(self.entry) is None:
            pytest.skip(f"{self.entry} does not exist yet")
        return reachable(self.entry)


def images() -> list[Image]:
    found = [
        Image(s, f"services.{s}.main", SERVICES_DIR / s / "requirements.txt", SERVICE_DOCKERFILE, s)
        for s in service_folders()
    ]
    forecast = SERVICES_DIR / "forecast"
    model_server = Image(
        MODEL_SERVER,
        MODEL_SERVER_MODULE,
        forecast / "requirements-model-server.txt",
        forecast / "Dockerfile.model-server",
    )
    return [*found, model_server]


@pytest.mark.parametrize("built", images(), ids=lambda image: image.name)
def test_each_image_installs_what_its_code_imports_and_nothing_unused(built: Image) -> None:
    image, requirements = built.name, built.requirements
    modules, external = built.reachable()
    service = "forecast" if image == MODEL_SERVER else image
    foreign = [m for m in modules if m.startswith("services.") and m.split(".")[1] != service]
    assert not foreign, f"{image} imports another service: {foreign}"
    copied = [m for m in modules if m.split(".")[0] not in {"shared", "services"}]
    assert not copied, f"{image} imports modules its Dockerfile does not copy: {copied}"

    listed = read_requirements(requirements)
    installed = installed_closure(listed)
    needed, unprovided = external_distributions(external)
    assert not unprovided, f"nothing installed here provides {unprovided} ({image})"
    missing = sorted(needed - installed)
    name = requirements.relative_to(REPO_ROOT)
    assert not missing, f"{name} does not install {missing}, which {image} imports"
    # Listed but never imported is fine only for the runtime and for what an imported package needs anyway.
    pulled_in = installed_closure(needed)
    unused = sorted(listed - needed - RUNTIME_ONLY - pulled_in)
    assert not unused, f"{name} installs what {image} never imports: {unused}"


def test_chat_documents_table_has_the_columns_the_chat_index_loads(resources: dict[str, Any]) -> None:
    """BigQueryVectorIndex.sync loads dict rows into the table Terraform creates; the keys must match."""
    index = SERVICES_DIR / "chat" / "index.py"
    if not index.is_file():
        pytest.skip("services/chat/index.py does not exist yet")
    tree = ast.parse(index.read_text())
    syncs = [
        node
        for cls in ast.walk(tree)
        if isinstance(cls, ast.ClassDef) and cls.name == "BigQueryVectorIndex"
        for node in cls.body
        if isinstance(node, ast.FunctionDef) and node.name == "sync"
    ]
    assert syncs, "BigQueryVectorIndex.sync not found: update this test with the chat index"
    loaded = {
        key.value
        for node in ast.walk(syncs[0])
        if isinstance(node, ast.Dict)
        for key in node.keys
        if isinstance(key, ast.Constant) and isinstance(key.value, str)
    }
    schema = unquote(resources["google_bigquery_table.chat_documents"]["schema"])
    columns = set(re.findall(r'name\s*=\s*\\?"([a-z_]+)\\?"', schema))
    assert loaded == columns
    # and the load passes Terraform's schema itself (no autodetect replacing it), name, type and mode
    from services.chat.index import DOCUMENT_SCHEMA

    fields = re.findall(
        r'name\s*=\s*\\?"([a-z_]+)\\?",\s*type\s*=\s*\\?"([A-Z0-9]+)\\?",\s*mode\s*=\s*\\?"([A-Z]+)\\?"',
        schema,
    )
    assert tuple(fields) == DOCUMENT_SCHEMA


# Files a module reads at run time, besides its own code.
DATA_FILES = {
    "shared.topology": "infra/events.yaml",
    "shared.warehouse.contracts": "shared/sql/marts/hourly_consumption.yml",
}


def copied_paths(dockerfile: Path, service: str | None = None) -> list[str]:
    """Repository paths the final image gets from the build context (COPY without --from), with the
    SERVICE build argument filled in."""
    sources: list[str] = []
    text = dockerfile.read_text().replace("${SERVICE}", service or "${SERVICE}")
    for line in text.replace("\\\n", " ").splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def is_copied(path: str, sources: list[str]) -> bool:
    return any(path == s or (s.endswith("/") and path.startswith(s)) for s in sources)


@pytest.mark.parametrize("built", images(), ids=lambda image: image.name)
def test_each_image_copies_every_module_and_data_file_its_entrypoint_reaches(built: Image) -> None:
    image, dockerfile = built.name, built.dockerfile
    modules, _ = built.reachable()
    sources = copied_paths(dockerfile, built.service)
    needed = [str(path.relative_to(REPO_ROOT)) for path in modules.values()]
    needed += [data for module, data in DATA_FILES.items() if module in modules]
    missing = sorted(path for path in needed if not is_copied(path, sources))
    assert not missing, f"{dockerfile.relative_to(REPO_ROOT)} does not COPY {missing}, which {image} needs"


# --- operations (monitoring.tf) -------------------------------------------------------------------------


def test_every_subscription_and_service_has_its_alert(resources: dict[str, Any]) -> None:
    assert (
        resources["google_monitoring_alert_policy.dead_letters"]["for_each"] == "${local.dead_letter_topics}"
    )
    assert (
        resources["google_monitoring_alert_policy.oldest_unacked"]["for_each"]
        == "${local.push_subscriptions}"
    )
    assert resources["google_monitoring_alert_policy.run_5xx_ratio"]["for_each"] == "${local.run_services}"
    dead = resources["google_monitoring_alert_policy.dead_letters"]["conditions"][0]["condition_threshold"][0]
    assert "num_undelivered_messages" in dead["filter"]
    assert "${each.value.pull_subscription}" in dead["filter"]
    for name, body in resources.items():
        if name.startswith("google_monitoring_alert_policy."):
            assert body["notification_channels"] == "${local.alert_common.notification_channels}", name


def test_the_stale_forecast_metric_counts_the_log_line_the_forecast_push_really_writes(
    resources: dict[str, Any],
) -> None:
    """The log-based metric must match shared/push.py's structured line, or the alert fires forever."""
    metric = unquote(resources["google_logging_metric.forecasts_refreshed"]["filter"])
    message = re.search(r'jsonPayload\.message=\\?"([^"\\]+)', metric).group(1)
    handler = re.search(r'jsonPayload\.handler=\\?"([^"\\]+)', metric).group(1)
    push = (REPO_ROOT / "shared" / "push.py").read_text()
    assert f'log.info("{message}", extra={{**facts' in push
    assert '"handler": handler' in push
    from services.forecast.main import ROUTES

    assert {route.handler for route in ROUTES.values()} == {handler}
    logging_module = (REPO_ROOT / "shared" / "logging.py").read_text()
    assert '"message"' in logging_module  # the JSON key Cloud Logging puts in jsonPayload.message


# --- the anomaly service's alert settings (services/anomaly/alerts.py) ---------------------------------


def own_settings_classes(service: str) -> list[type[BaseSettings]]:
    """BaseSettings classes besides the shared Settings defined in what `service` imports: settings
    with their own env prefix (GRIDSIGHT_ALERT_*) that settings_read cannot see."""
    modules, _ = reachable(f"services.{service}.main")
    found = []
    for name in modules:
        for value in vars(importlib.import_module(name)).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseSettings)
                and value is not Settings
                and value.__module__ == name
            ):
                found.append(value)
    return found


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    prefix = cls.model_config.get("env_prefix", "")
    return {field: f"{prefix}{field}".upper() for field in cls.model_fields}


@pytest.mark.parametrize("service", service_folders())
def test_every_setting_of_a_service_own_settings_class_reaches_its_cloud_run_service(
    service: str, module_locals: dict[str, Any]
) -> None:
    """Every GRIDSIGHT_ALERT_* field alerts.py reads is set on the anomaly service: secrets by
    Secret Manager reference, the rest from var.anomaly_alerts (null there = the code's default)."""
    if module_file(f"services.{service}.main") is None:
        pytest.skip(f"services/{service}/main.py does not exist yet")
    env = service_env(module_locals, service)
    secrets = module_locals["service_needs"][service]["secrets"]
    run = (MODULE_DIR / "run.tf").read_text()
    # run.tf puts each service's own env on its container, leaving out nulls (= the code's default)
    assert re.search(r"merge\(local\.common_env, each\.value\.env, \{", run)
    assert re.search(r"name => value if value != null", run)
    for cls in own_settings_classes(service):
        for field, name in env_names(cls).items():
            if cls.model_fields[field].annotation is SecretStr:
                assert name in secrets, f"{service}: secret {name} is not a Secret Manager reference"
                assert name not in env, f"{service}: secret {name} must not be a plain env value"
            else:
                assert name in env, f"{service}: {cls.__name__}.{field} ({name}) is not set by Terraform"
    if service == "anomaly":
        from services.anomaly.alerts import AlertSettings

        assert AlertSettings in own_settings_classes("anomaly")
        assert unquote(secrets["GRIDSIGHT_ALERT_WEBHOOK_SECRET"]) == "alert-webhook-secret"
        assert unquote(secrets["GRIDSIGHT_ALERT_SMTP_PASSWORD"]) == "alert-smtp-password"


@pytest.mark.parametrize("secret", ["alert-webhook-secret", "alert-smtp-password"])
def test_only_the_anomaly_service_account_may_read_the_alert_secrets(
    module_locals: dict[str, Any], resources: dict[str, Any], secret: str
) -> None:
    """secretAccessor per (service, secret) it references (iam.tf service_secret_pairs) and Cloud
    Build's own short list: each alert secret is granted to exactly one runtime account."""
    readers = [
        s
        for s, needs in module_locals["service_needs"].items()
        if secret in map(unquote, needs["secrets"].values())
    ]
    assert readers == ["anomaly"]
    runtime = resources["google_secret_manager_secret_iam_member.runtime"]
    assert runtime["for_each"] == "${local.service_secret_pairs}"
    assert runtime["member"] == "${google_service_account.run[each.value.service].member}"
    assert unquote(runtime["role"]) == "roles/secretmanager.secretAccessor"
    build = resources["google_secret_manager_secret_iam_member.build"]
    assert secret not in str(build["for_each"])
    accessors = [n for n in resources if n.startswith("google_secret_manager_secret_iam")]
    assert sorted(accessors) == [
        "google_secret_manager_secret_iam_member.build",
        "google_secret_manager_secret_iam_member.runtime",
    ]


@pytest.fixture(scope="module")
def alert_locals(terraform: str | None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """alert_env and alert_worst_case_seconds as Terraform computes them, at the defaults and with
    e-mail and a webhook switched on (3 attempts, 10 s timeout, 2 s backoff)."""
    if terraform is None:
        pytest.skip("no terraform binary: alert settings not evaluated")
    expression = (
        "{env = local.alert_env, worst = local.alert_worst_case_seconds, "
        "timeout = local.service_timeout_seconds}"
    )
    on = (
        '{webhook_url = "https://hooks.example.org/gridsight", smtp_host = "relay.example.org", '
        'mail_to = "ops@example.org", smtp_username = "alerts@example.org", attempts = 3, timeout_s = 10, '
        "backoff_s = 2, "
        'quiet_start_hour = 22, quiet_end_hour = 7, quiet_timezone = "Europe/London", min_severity = "high"}'
    )
    return {
        "default": terraform_console(terraform, expression, tmp_path_factory.mktemp("tf-alerts-default")),
        "on": terraform_console(
            terraform, expression, tmp_path_factory.mktemp("tf-alerts-on"), {"anomaly_alerts": on}
        ),
    }


def alert_settings_from(env: dict[str, str | None], monkeypatch: pytest.MonkeyPatch) -> Any:
    """What the anomaly service would read from the env Terraform sets (run.tf drops the nulls)."""
    from services.anomaly.alerts import AlertSettings

    for name in env_names(AlertSettings).values():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    return AlertSettings()


def test_alerts_are_off_by_default_in_the_cloud(
    alert_locals: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = alert_locals["default"]["env"]
    assert env["GRIDSIGHT_ALERT_WEBHOOK_URL"] is None
    assert env["GRIDSIGHT_ALERT_SMTP_HOST"] is None
    assert env["GRIDSIGHT_ALERT_MAIL_TO"] is None
    cfg = alert_settings_from(env, monkeypatch)
    assert (cfg.webhook_url, cfg.smtp_host) == (None, None)  # deliver_alert records 'no_channel'
    assert (cfg.quiet_start_hour, cfg.quiet_end_hour) == (None, None)
    assert (cfg.attempts, cfg.timeout_s, cfg.backoff_s, cfg.min_severity) == (4, 5.0, 1.0, "medium")


def test_switched_on_alert_settings_parse_as_the_service_reads_them(
    alert_locals: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.anomaly.alert_channels import smtp_security

    cfg = alert_settings_from(alert_locals["on"]["env"], monkeypatch)
    assert cfg.webhook_url == "https://hooks.example.org/gridsight"
    assert (cfg.smtp_host, cfg.smtp_port, cfg.mail_to) == ("relay.example.org", 587, "ops@example.org")
    assert (cfg.smtp_username, cfg.smtp_security, cfg.smtp_ca_file) == ("alerts@example.org", "auto", None)
    assert smtp_security(cfg) == "starttls"  # a login on 587: STARTTLS required before AUTH
    assert (cfg.quiet_start_hour, cfg.quiet_end_hour, cfg.quiet_timezone) == (22, 7, "Europe/London")
    assert (cfg.attempts, cfg.timeout_s, cfg.backoff_s, cfg.min_severity) == (3, 10.0, 2.0, "high")


def test_the_severities_terraform_accepts_are_those_the_service_knows(module: dict[str, Any]) -> None:
    from typing import get_args

    from services.anomaly.alerts import AlertSettings

    variable = blocks(module["variables.tf"], "variable")["anomaly_alerts"]
    rules = " ".join(unquote(v["condition"]) for v in variable["validation"])
    accepted = re.search(
        r'contains\(\[("[a-z]+"(?:, "[a-z]+")*)\], var\.anomaly_alerts\.min_severity\)', rules
    )
    assert accepted, "min_severity validation not found"
    assert re.findall(r'"([a-z]+)"', accepted.group(1)) == list(
        get_args(AlertSettings.model_fields["min_severity"].annotation)
    )


def test_a_worst_case_alert_delivery_fits_the_anomaly_request_timeout(
    alert_locals: dict[str, Any], resources: dict[str, Any]
) -> None:
    """By hand: defaults = 4 attempts x 5 s + waits 1 + 2 + 4 s = 27 s; switched on = 3 x 10 s + waits
    2 + 4 s + e-mail 12 x 10 s = 156 s. run.tf refuses the plan unless it leaves 30 s of the timeout."""
    assert alert_locals["default"]["worst"] == 27
    assert alert_locals["on"]["worst"] == 156
    timeout = alert_locals["default"]["timeout"]["anomaly"]
    assert timeout == min(
        s.ack_deadline_seconds for s in load_topology().subscriptions.values() if s.service == "anomaly"
    )
    assert alert_locals["default"]["worst"] + 30 <= timeout  # the default plan passes
    assert alert_locals["on"]["worst"] + 30 > timeout  # this one would be refused
    [precondition] = resources["google_cloud_run_v2_service.service"]["lifecycle"][0]["precondition"]
    assert unquote(precondition["condition"]) == (
        '${each.key != "anomaly" || local.alert_worst_case_seconds + 30 '
        "<= local.service_timeout_seconds[each.key]}"
    )


def test_the_module_refuses_smtp_port_25_which_google_cloud_blocks(module: dict[str, Any]) -> None:
    """Outbound port 25 to external addresses is blocked on Google Cloud: the code's local default (25)
    would make every cloud e-mail time out, so the module defaults to 587 and refuses 25."""
    from services.anomaly.alerts import AlertSettings

    variable = blocks(module["variables.tf"], "variable")["anomaly_alerts"]
    assert re.search(r"smtp_port\s*=\s*optional\(number, 587\)", unquote(variable["type"]))
    rules = [unquote(v["condition"]) for v in variable["validation"]]
    assert "${var.anomaly_alerts.smtp_port != 25}" in rules
    assert AlertSettings.model_fields["smtp_port"].default == 25  # why Terraform must set it


def test_the_placeholder_alert_matches_the_line_the_anomaly_service_logs(resources: dict[str, Any]) -> None:
    """The log-match alert must match alerts.py's warning, or a skipped alert would go unnoticed."""
    condition = resources["google_monitoring_alert_policy.alert_secret_placeholder"]["conditions"][0]
    log_filter = unquote(condition["condition_matched_log"][0]["filter"])
    phrases = re.findall(r'jsonPayload\.message:\\?"([^"\\]+)', log_filter)
    assert phrases == ["alert webhook skipped", "alert e-mail skipped"]
    assert "severity=WARNING" in log_filter
    alerts = (SERVICES_DIR / "anomaly" / "alerts.py").read_text()
    for phrase in phrases:
        assert re.search(rf'log\.warning\(\s*"{re.escape(phrase)}', alerts)


def test_the_module_accepts_the_smtp_security_modes_the_service_knows(module: dict[str, Any]) -> None:
    """Terraform refuses what AlertSettings would refuse at the first alert: an unknown mode, or a
    login with smtp_security = none (the password would cross the network in clear)."""
    from typing import get_args

    from services.anomaly.alert_channels import AlertSettings

    variable = blocks(module["variables.tf"], "variable")["anomaly_alerts"]
    assert re.search(r'smtp_security\s*=\s*optional\(string, "auto"\)', unquote(variable["type"]))
    rules = " ".join(unquote(v["condition"]) for v in variable["validation"])
    accepted = re.search(
        r'contains\(\[("[a-z]+"(?:, "[a-z]+")*)\], var\.anomaly_alerts\.smtp_security\)', rules
    )
    assert accepted, "smtp_security validation not found"
    assert re.findall(r'"([a-z]+)"', accepted.group(1)) == list(
        get_args(AlertSettings.model_fields["smtp_security"].annotation)
    )
    assert (
        '!(var.anomaly_alerts.smtp_username != null && var.anomaly_alerts.smtp_security == "none")' in rules
    )
