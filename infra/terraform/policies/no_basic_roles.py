"""CKV_GRIDSIGHT_4: no basic role (owner, editor, viewer) is granted anywhere.

Basic roles span every service in the project; each identity here gets predefined roles scoped to
the one dataset, topic, secret or service it uses. checkov's built-in checks cover only some IAM
resources, and none at dataset, topic, secret or service level.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies._conf import as_strings

BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
_SCOPES = [
    "project",
    "folder",
    "organization",
    "service_account",
    "bigquery_dataset",
    "bigquery_table",
    "pubsub_topic",
    "pubsub_subscription",
    "secret_manager_secret",
    "storage_bucket",
    "artifact_registry_repository",
    "cloud_run_v2_service",
    "cloud_run_v2_job",
    "cloud_run_service",
]


class NoBasicRoles(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="No basic roles (roles/owner, roles/editor, roles/viewer)",
            id="CKV_GRIDSIGHT_4",
            categories=[CheckCategories.IAM],
            supported_resources=[
                f"google_{scope}_iam_{kind}" for scope in _SCOPES for kind in ("member", "binding")
            ],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        roles = set(as_strings(conf.get("role")))
        return CheckResult.FAILED if roles & BASIC_ROLES else CheckResult.PASSED


check = NoBasicRoles()
