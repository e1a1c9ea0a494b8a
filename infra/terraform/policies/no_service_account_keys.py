"""CKV_GRIDSIGHT_5: no service-account key is ever created, and no alert policy notifies nobody.

Keys are long-lived credentials that leak; every identity here authenticates keylessly (Cloud Run
and Cloud Build run as their service accounts, Pub/Sub mints OIDC tokens, an outside CI uses
Workload Identity Federation). checkov's built-in CKV_GCP_* checks do not forbid the key resource
itself. An alert policy without notification channels would fire into the console only, so each
must set them (from the channels variable, which may be empty in a throwaway project).
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck


class NoServiceAccountKeys(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="No service-account keys; every alert policy routes to notification channels",
            id="CKV_GRIDSIGHT_5",
            categories=[CheckCategories.IAM],
            supported_resources=["google_service_account_key", "google_monitoring_alert_policy"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        if self.entity_type == "google_service_account_key":
            return CheckResult.FAILED
        # wired to the channels input (which may resolve to [] in a throwaway project) is enough
        return CheckResult.PASSED if "notification_channels" in conf else CheckResult.FAILED


check = NoServiceAccountKeys()
