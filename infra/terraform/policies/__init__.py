"""Custom checkov policies for gridsight (loaded with `checkov --external-checks-dir`).

checkov has no built-in checks for google_cloud_run_v2_* or google_pubsub_subscription, so the
rules this deployment's security rests on are written here. Importing a module registers its check.
"""
