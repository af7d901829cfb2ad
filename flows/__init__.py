"""The pipeline's Prefect flows.

Importing this package sets the environment defaults the project runs with, before prefect is
imported (`flows/main.py` imports it first when run as a script): Prefect's local server sends
anonymous analytics unless told not to, which offline logs `ERROR
prefect.server.services.telemetry - Failed to send telemetry` on every run. A value the user
set wins. (Soda's telemetry is turned off where Soda is imported: tasks/quality/__init__.py.)
"""

import os

ENVIRONMENT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}

for _name, _value in ENVIRONMENT_DEFAULTS.items():
    os.environ.setdefault(_name, _value)
