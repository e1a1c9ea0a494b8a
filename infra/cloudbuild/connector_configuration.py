"""Print the connector's configuration.json for `fivetran deploy`, from the build's environment.

The vendor API key arrives from Secret Manager as an environment variable (cloudbuild.yaml
`secretEnv`) and goes only to stdout, redirected to the build's scratch disk; it is never in the
repository, in Terraform state or in a build argument. Fivetran stores configuration values as strings.
"""

from __future__ import annotations

import json
import os
import sys

# connector configuration key -> environment variable that carries it in the build
CONFIGURATION = {"base_url": "VENDOR_API_URL", "api_key": "VENDOR_API_KEY"}


def main() -> int:
    missing = [env for env in CONFIGURATION.values() if not os.environ.get(env)]
    if missing:
        print(f"missing environment variables: {', '.join(missing)}", file=sys.stderr)
        return 2
    json.dump({key: os.environ[env] for key, env in CONFIGURATION.items()}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
