"""checkov (offline, built-in checks plus policies/) passes, every skip says why, and our policies bite."""

from __future__ import annotations

import re
from typing import Any

from tests.infra.tfcommon import INSECURE_FIXTURE, REPO_ROOT, TERRAFORM_DIR

SKIP_COMMENT = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def results(reports: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [check for report in reports for check in report["results"].get(kind, [])]


def test_checkov_finds_no_failed_check_in_terraform_or_dockerfiles(
    checkov_report: list[dict[str, Any]],
) -> None:
    assert {r["check_type"] for r in checkov_report} == {"terraform", "dockerfile"}
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for c in results(checkov_report, "failed_checks")
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert all(r["summary"]["parsing_errors"] == 0 for r in checkov_report)


def test_our_policies_ran_on_the_resources_they_guard(checkov_report: list[dict[str, Any]]) -> None:
    passed = {(c["check_id"], c["resource"]) for c in results(checkov_report, "passed_checks")}
    expected = [
        ("CKV_GRIDSIGHT_1", "module.gridsight.google_cloud_run_v2_service_iam_member.chat_invoker"),
        ("CKV_GRIDSIGHT_1", "module.gridsight.google_cloud_run_v2_service.service"),
        ("CKV_GRIDSIGHT_2", "module.gridsight.google_pubsub_subscription.push"),
        ("CKV_GRIDSIGHT_3", "module.gridsight.google_pubsub_subscription.push"),
        ("CKV_GRIDSIGHT_4", "module.gridsight.google_cloud_run_v2_service_iam_member.push_invoker"),
        ("CKV_GRIDSIGHT_5", "module.gridsight.google_monitoring_alert_policy.forecasts_stale"),
    ]
    for pair in expected:
        assert pair in passed, f"{pair} was not evaluated"


def test_every_skipped_check_is_skipped_inline_with_a_reason(checkov_report: list[dict[str, Any]]) -> None:
    for check in results(checkov_report, "skipped_checks"):
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason) > 20, f"{check['check_id']} on {check['resource']} is skipped without a reason"
    sources = [
        *TERRAFORM_DIR.rglob("*.tf"),
        *REPO_ROOT.glob("services/**/Dockerfile*"),
        *REPO_ROOT.glob("infra/**/*Dockerfile"),
    ]
    for path in sources:
        for match in SKIP_COMMENT.finditer(path.read_text()):
            reason = (match.group(2) or "").strip()
            assert len(reason) > 20, f"{path}: {match.group(0)} has no reason"


def test_custom_policies_fail_insecure_terraform(insecure_report: list[dict[str, Any]]) -> None:
    """Every `bad_*` resource in the fixture fails its policy; every `ok_*` resource passes."""
    failed = {(c["check_id"], c["resource"]) for c in results(insecure_report, "failed_checks")}
    passed = {(c["check_id"], c["resource"]) for c in results(insecure_report, "passed_checks")}
    assert failed == {
        ("CKV_GRIDSIGHT_1", "google_cloud_run_v2_service_iam_member.bad_public_chat"),
        ("CKV_GRIDSIGHT_1", "google_cloud_run_v2_service.bad_iam_disabled"),
        ("CKV_GRIDSIGHT_1", "google_cloud_run_v2_service.bad_iam_disabled_by_expression"),
        ("CKV_GRIDSIGHT_2", "google_pubsub_subscription.bad_push_without_oidc"),
        ("CKV_GRIDSIGHT_2", "google_pubsub_subscription.bad_push_without_dead_letter"),
        ("CKV_GRIDSIGHT_3", "google_pubsub_subscription.bad_push_without_dead_letter"),
        ("CKV_GRIDSIGHT_4", "google_project_iam_member.bad_editor"),
        ("CKV_GRIDSIGHT_4", "google_bigquery_dataset_iam_member.bad_dataset_owner"),
        ("CKV_GRIDSIGHT_5", "google_service_account_key.bad_key"),
        ("CKV_GRIDSIGHT_5", "google_monitoring_alert_policy.bad_alert_to_nobody"),
    }
    assert ("CKV_GRIDSIGHT_1", "google_cloud_run_v2_service_iam_member.ok_public_webhook") in passed
    assert ("CKV_GRIDSIGHT_2", "google_pubsub_subscription.ok_pull") in passed
    assert ("CKV_GRIDSIGHT_5", "google_monitoring_alert_policy.ok_alert") in passed
    assert all(name.split(".")[-1].startswith("bad_") for _, name in failed), INSECURE_FIXTURE
