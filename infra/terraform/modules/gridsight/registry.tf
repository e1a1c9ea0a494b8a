# Artifact Registry for the service images and the model-server image (names in local.images).

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption at rest; CMEK (key ring, rotation, per-agent grants) is an organisation-level choice, see infra/README.md
  project       = var.project_id
  location      = var.region
  repository_id = local.repository_id
  description   = "gridsight service and model-server images, pushed by cloudbuild.yaml."
  format        = "DOCKER"
  labels        = merge(var.labels, { app = "gridsight" })

  docker_config {
    immutable_tags = true # a tag (the commit SHA) always names the same image; rollback relies on it
  }

  # Keep the recent images (rollback targets), drop the rest.
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 20
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.api]
}
