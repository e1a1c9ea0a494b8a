#!/usr/bin/env bash
# Upload the model-server image with the model artefacts in gs://$MODEL_BUCKET/models/ as a new
# version of the Vertex AI model "$PREFIX-forecast", deploy it to the forecast endpoint with all
# traffic, then undeploy the versions it replaced; but only when something changed: the deployment
# is named after the newest trained version and a hash of the model server's code ($CODE_HASH), and
# a build whose pair is already deployed leaves the endpoint alone (no new replicas, no traffic
# shift on every push). Called by cloudbuild.yaml (step deploy-model);
# rollback: infra/README.md. Vertex copies the artefacts at deploy time, so a newly trained model
# reaches the cloud through this script (the local model server picks new files up by itself).
set -euo pipefail

: "${REGION:?}" "${PREFIX:?}" "${IMAGE:?}" "${MODEL_BUCKET:?}" "${ENDPOINT_ID:?}" "${MODEL_SERVER_SA:?}" "${VERSION:?}" "${CODE_HASH:?}"

display_name="${PREFIX}-forecast"
alias="sha-${VERSION}"

# The newest complete version: a folder with its model_card.json (written last by the trainer).
newest="$(gcloud storage ls "gs://${MODEL_BUCKET}/models/*/model_card.json" 2>/dev/null | sed -E 's#.*/models/([^/]+)/model_card\.json$#\1#' | sort | tail -n 1 || true)"
if [[ -z "${newest}" ]]; then
  echo "no model artefacts under gs://${MODEL_BUCKET}/models/ yet: train one first (infra/README.md); endpoint left as it is"
  exit 0
fi
deployment="${display_name}-${newest}-${CODE_HASH:0:8}"
deployed_names="$(gcloud ai endpoints describe "${ENDPOINT_ID}" --region="${REGION}" --format='value(deployedModels[].displayName)' | tr ';,' '\n\n')"
if grep -qxF "${deployment}" <<<"${deployed_names}"; then
  echo "model ${newest} with model-server code ${CODE_HASH:0:8} already deployed as ${deployment}: nothing to do"
  exit 0
fi

parent="$(gcloud ai models list --region="${REGION}" --filter="displayName=${display_name}" --format='value(name)' --limit=1)"
upload=(
  --region="${REGION}"
  --display-name="${display_name}"
  --container-image-uri="${IMAGE}"
  --artifact-uri="gs://${MODEL_BUCKET}/models"
  --container-health-route=/health
  --container-predict-route=/predict
  --container-ports=8080
  --version-aliases="default,${alias}"
)
if [[ -n "${parent}" ]]; then
  upload+=(--parent-model="${parent}")
fi
gcloud ai models upload "${upload[@]}"

model="$(gcloud ai models list --region="${REGION}" --filter="displayName=${display_name}" --format='value(name)' --limit=1)"
before="$(gcloud ai endpoints describe "${ENDPOINT_ID}" --region="${REGION}" --format='value(deployedModels[].id)' | tr ';,' '  ')"

gcloud ai endpoints deploy-model "${ENDPOINT_ID}" \
  --region="${REGION}" \
  --model="${model}@${alias}" \
  --display-name="${deployment}" \
  --machine-type=n1-standard-2 \
  --min-replica-count=1 \
  --max-replica-count=2 \
  --service-account="${MODEL_SERVER_SA}" \
  --traffic-split=0=100

# The new deployment serves all traffic now; the old ones only cost replicas.
for deployed in ${before}; do
  gcloud ai endpoints undeploy-model "${ENDPOINT_ID}" --region="${REGION}" --deployed-model-id="${deployed}"
done
