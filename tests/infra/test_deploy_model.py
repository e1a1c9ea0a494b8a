"""infra/cloudbuild/deploy-model.sh deploys a model only when the newest version or the model
server's code changed (#20: every push redeployed it). Google Cloud is the boundary: `gcloud` is a
stub on PATH that answers from the test's fixture and records every call."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.infra.tfcommon import REPO_ROOT

SCRIPT = REPO_ROOT / "infra" / "cloudbuild" / "deploy-model.sh"
STUB = r"""#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$*" in
  "storage ls gs://"*"/models/*/model_card.json")
    for v in $FAKE_VERSIONS; do echo "gs://b/models/$v/model_card.json"; done ;;
  *"deployedModels[].displayName"*) echo "$FAKE_DEPLOYED_NAMES" ;;
  *"deployedModels[].id"*) echo "$FAKE_DEPLOYED_IDS" ;;
  "ai models list"*) echo "projects/p/locations/europe-west1/models/42" ;;
esac
"""
CODE_HASH = "0123456789abcdef"


def run(tmp_path: Path, versions: str, deployed_names: str, deployed_ids: str = "") -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gcloud").write_text(STUB)
    (bin_dir / "gcloud").chmod(0o755)
    log = tmp_path / "gcloud.log"
    log.write_text("")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "FAKE_VERSIONS": versions,
        "FAKE_DEPLOYED_NAMES": deployed_names,
        "FAKE_DEPLOYED_IDS": deployed_ids,
        "REGION": "europe-west1",
        "PREFIX": "gridsight",
        "IMAGE": "img:abc",
        "MODEL_BUCKET": "b",
        "ENDPOINT_ID": "730000001",
        "MODEL_SERVER_SA": "ms@p.iam.gserviceaccount.com",
        "VERSION": "abc1234",
        "CODE_HASH": CODE_HASH,
    }
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()


def _changes(calls: list[str]) -> list[str]:
    return [
        c
        for c in calls
        if c.startswith(("ai models upload", "ai endpoints deploy-model", "ai endpoints undeploy"))
    ]


def test_no_trained_model_leaves_the_endpoint_alone(tmp_path: Path) -> None:
    assert _changes(run(tmp_path, versions="", deployed_names="")) == []


def test_the_same_model_and_code_already_deployed_is_not_redeployed(tmp_path: Path) -> None:
    calls = run(
        tmp_path,
        versions="20260301T0000 20260302T0000",
        deployed_names="gridsight-forecast-20260302T0000-01234567",
    )
    assert _changes(calls) == []


def test_a_newer_model_is_uploaded_deployed_under_its_name_and_the_old_deployment_undeployed(
    tmp_path: Path,
) -> None:
    calls = run(
        tmp_path,
        versions="20260301T0000 20260302T0000",
        deployed_names="gridsight-forecast-20260301T0000-01234567",
        deployed_ids="111",
    )
    changes = _changes(calls)
    assert changes[0].startswith("ai models upload")
    assert "--parent-model=projects/p/locations/europe-west1/models/42" in changes[0]
    assert changes[1].startswith("ai endpoints deploy-model 730000001")
    assert "--display-name=gridsight-forecast-20260302T0000-01234567" in changes[1]
    assert changes[2] == "ai endpoints undeploy-model 730000001 --region=europe-west1 --deployed-model-id=111"
    assert len(changes) == 3


def test_changed_model_server_code_redeploys_the_same_model(tmp_path: Path) -> None:
    calls = run(
        tmp_path, versions="20260302T0000", deployed_names="gridsight-forecast-20260302T0000-ffffffff"
    )
    assert [c.split()[2] for c in _changes(calls)][:2] == ["upload", "deploy-model"]
