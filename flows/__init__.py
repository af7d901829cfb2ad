"""The pipeline's Prefect flows.

Importing this package sets the environment defaults the project runs with, before prefect or
soda are imported (`flows/main.py` imports it first when run as a script): Prefect's local
server sends anonymous analytics unless told not to, which offline logs `ERROR
prefect.server.services.telemetry - Failed to send telemetry` on every run, and Soda Core's
telemetry costs ~6 s of failed network calls. A value the user set wins.
"""

import os

ENVIRONMENT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "SODA_CORE_TELEMETRY_ENABLED": "false",
}

for _name, _value in ENVIRONMENT_DEFAULTS.items():
    os.environ.setdefault(_name, _value)
