# syntax=docker/dockerfile:1
# The image cloudbuild.yaml's `test` step runs `make test` in: everything `make test` calls that a
# python:3.11 image lacks. make/git (the Makefile), npm (`make tf-schema`: the google provider's
# schema bindings), Chromium (`make browser`, the dashboard's browser tests), Java + the Google
# Cloud CLI with the Pub/Sub emulator (the emulator tests) and terraform (`terraform fmt`, console).
# Built in the same build and used by the next step (never pushed); tests/infra checks that it
# installs every tool the Makefile's test targets run.
FROM python:3.11.14-slim-bookworm
#checkov:skip=CKV_DOCKER_2:A build step, not a service: nothing probes it
#checkov:skip=CKV_DOCKER_3:Cloud Build steps run as root by design (make test installs Chromium with apt)
ARG TERRAFORM_VERSION=1.9.8
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        make git nodejs npm chromium default-jre-headless curl ca-certificates gnupg unzip \
    && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg \
        | gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg \
    && echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
        > /etc/apt/sources.list.d/google-cloud-sdk.list \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        google-cloud-cli google-cloud-cli-pubsub-emulator \
    && curl -fsSLo /tmp/terraform.zip \
        "https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}/terraform_${TERRAFORM_VERSION}_linux_amd64.zip" \
    && unzip /tmp/terraform.zip -d /usr/local/bin && rm /tmp/terraform.zip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /workspace
