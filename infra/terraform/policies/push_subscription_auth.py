"""CKV_GRIDSIGHT_2: every push subscription sends an OIDC token and has a dead-letter policy.

Without OIDC the receiving service cannot tell Pub/Sub from anyone else; without a dead-letter
policy a poison message is retried until it expires and is then lost without a trace.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies._conf import block, first


def is_push(conf: dict[str, Any]) -> bool:
    """A push_config block, written out or dynamic, makes a push subscription."""
    dynamic = first(conf, "dynamic") or {}
    return block(conf, "push_config") is not None or (isinstance(dynamic, dict) and "push_config" in dynamic)


class PushSubscriptionOidcAndDeadLetter(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Pub/Sub push subscriptions use OIDC push auth and a dead-letter policy",
            id="CKV_GRIDSIGHT_2",
            categories=[CheckCategories.IAM],
            supported_resources=["google_pubsub_subscription"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        if not is_push(conf):
            return CheckResult.PASSED
        push = block(conf, "push_config") or {}
        oidc = block(push, "oidc_token") or {}
        dead_letter = block(conf, "dead_letter_policy") or {}
        has_oidc = bool(first(oidc, "service_account_email"))
        has_dead_letter = bool(first(dead_letter, "dead_letter_topic"))
        return CheckResult.PASSED if has_oidc and has_dead_letter else CheckResult.FAILED


check = PushSubscriptionOidcAndDeadLetter()
