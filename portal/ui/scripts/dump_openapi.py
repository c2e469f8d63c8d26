"""Print the portal's OpenAPI schema (stable JSON), the input of the generated TypeScript client."""

from __future__ import annotations

import json
import sys

from portal.app import create_app
from portal.config import Settings

# A fixed secret: building the app must not create the secret file the portal keeps on disk.
schema = create_app(Settings(session_secret="openapi-dump")).openapi()
json.dump(schema, sys.stdout, indent=2, sort_keys=True)
sys.stdout.write("\n")
