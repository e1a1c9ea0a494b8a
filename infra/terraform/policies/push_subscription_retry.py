"""CKV_GRIDSIGHT_3: every push subscription sets an explicit retry (backoff) policy.

Without one, Pub/Sub redelivers a nacked push immediately, hammering a service that just failed.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies._conf import block, first
from policies.push_subscription_auth import is_push


class PushSubscriptionRetryPolicy(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Pub/Sub push subscriptions back off between redeliveries",
            id="CKV_GRIDSIGHT_3",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_pubsub_subscription"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        if not is_push(conf):
            return CheckResult.PASSED
        retry = block(conf, "retry_policy") or {}
        has_backoff = bool(first(retry, "minimum_backoff")) and bool(first(retry, "maximum_backoff"))
        return CheckResult.PASSED if has_backoff else CheckResult.FAILED


check = PushSubscriptionRetryPolicy()
