"""CKV_GRIDSIGHT_1: only the Fivetran webhook's service (ingest) may be invoked without IAM.

Fivetran cannot present a Google identity, so ingest must accept unauthenticated requests; it
verifies the webhook's HMAC signature, and the OIDC token of every push in code. Any other public
invoker (allUsers / allAuthenticatedUsers, or invoker IAM switched off) would expose an API that
relies on IAM alone.
"""

from __future__ import annotations

import re
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies._conf import as_strings, first

PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
# The service (events.yaml `services:` key) whose webhook path is public, named either through the
# module's map (`google_cloud_run_v2_service.service["ingest"]`) or by its resource name.
WEBHOOK_SERVICE = "ingest"
_WEBHOOK_REFERENCE = re.compile(rf'(\["{WEBHOOK_SERVICE}"\]|-{WEBHOOK_SERVICE})(\.name)?\}}?$')
# In the module's for_each over all services, IAM may be off only for the webhook's key.
_WEBHOOK_ONLY = re.compile(r"^\$\{\s*each\.key\s*==\s*local\.webhook_service\s*\}$")


class NoPublicInvokerExceptWebhook(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Only the webhook's Cloud Run service may allow unauthenticated invocation",
            id="CKV_GRIDSIGHT_1",
            categories=[CheckCategories.IAM],
            supported_resources=[
                "google_cloud_run_v2_service",
                "google_cloud_run_v2_service_iam_member",
                "google_cloud_run_v2_service_iam_binding",
                "google_cloud_run_service_iam_member",
                "google_cloud_run_service_iam_binding",
            ],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        if self.entity_type == "google_cloud_run_v2_service":
            disabled = first(conf, "invoker_iam_disabled")
            if disabled in (None, False, "false"):
                return CheckResult.PASSED
            if isinstance(disabled, str) and disabled not in ("true",):
                return CheckResult.PASSED if _WEBHOOK_ONLY.match(disabled.strip()) else CheckResult.FAILED
            target = str(first(conf, "name") or "")
        else:
            members = set(as_strings(conf.get("member")) + as_strings(conf.get("members")))
            if not members & PUBLIC_MEMBERS:
                return CheckResult.PASSED
            target = str(first(conf, "name") or first(conf, "service") or "")
        return CheckResult.PASSED if _WEBHOOK_REFERENCE.search(target) else CheckResult.FAILED


check = NoPublicInvokerExceptWebhook()
