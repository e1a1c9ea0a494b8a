#!/usr/bin/env bash
# Upload the model-server image with the model artefacts in gs://$MODEL_BUCKET/models/ as a new
# version of the Vertex AI model "$PREFIX-forecast", deploy it to the forecast endpoint with all
# traffic, then undeploy the versions it replaced. Called by cloudbuild.yaml (step deploy-model);
# rollback: infra/README.md. Vertex copies the artefacts at deploy time, so a newly trained model
# reaches the cloud through this script (the local model server picks new files up by itself).
set -euo pipefail

: "${REGION:?}" "${PREFIX:?}" "${IMAGE:?}" "${MODEL_BUCKET:?}" "${ENDPOINT_ID:?}" "${MODEL_SERVER_SA:?}" "${VERSION:?}"

display_name="${PREFIX}-forecast"
alias="sha-${VERSION}"

if ! gcloud storage ls "gs://${MODEL_BUCKET}/models/" >/dev/null 2>&1; then
  echo "no model artefacts under gs://${MODEL_BUCKET}/models/ yet: train one first (infra/README.md); endpoint left as it is"
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
  --display-name="${display_name}-${VERSION}" \
  --machine-type=n1-standard-2 \
  --min-replica-count=1 \
  --max-replica-count=2 \
  --service-account="${MODEL_SERVER_SA}" \
  --traffic-split=0=100

# The new deployment serves all traffic now; the old ones only cost replicas.
for deployed in ${before}; do
  gcloud ai endpoints undeploy-model "${ENDPOINT_ID}" --region="${REGION}" --deployed-model-id="${deployed}"
done
