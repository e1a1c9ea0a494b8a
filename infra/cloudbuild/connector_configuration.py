"""Print the connector's configuration.json for `fivetran deploy`, from the build's environment.

The committed fivetran_connector/configuration.json (the local-development values) is the base, so
tuning keys (page size, start date, look-back) stay defined once; the deployment replaces what differs
in the cloud: the vendor API URL and key. The key arrives from Secret Manager as an environment
variable (cloudbuild.yaml `secretEnv`) and goes only to stdout, redirected to the build's scratch
disk; it is never in the repository, in Terraform state or in a build argument.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

BASE = Path(__file__).resolve().parents[2] / "fivetran_connector" / "configuration.json"
# connector configuration key -> environment variable that carries its cloud value
OVERRIDES = {"base_url": "VENDOR_API_URL", "api_key": "VENDOR_API_KEY"}


def render(environ: dict[str, str], base: Path = BASE) -> dict[str, str]:
    """The deployed configuration; ValueError names what is missing or wrong."""
    missing = [env for env in OVERRIDES.values() if not environ.get(env, "").strip()]
    if missing:
        raise ValueError(f"missing environment variables: {', '.join(missing)}")
    if not environ["VENDOR_API_URL"].startswith("https://"):
        raise ValueError("VENDOR_API_URL must be an https:// URL: set vendor_api_url in Terraform")
    configuration = {key: str(value) for key, value in json.loads(base.read_text()).items()}
    configuration.update({key: environ[env].strip() for key, env in OVERRIDES.items()})
    return configuration


def main() -> int:
    try:
        configuration = render(dict(os.environ))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    json.dump(configuration, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
