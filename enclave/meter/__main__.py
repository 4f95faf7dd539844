"""Run the egress meter as a hub-managed service (see enclave.hub.config).

Environment: ENCLAVE_METER_PORT (loopback port), ENCLAVE_METER_TOKEN (control API),
JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN (set by the hub: to stop servers), and the
enclave's own ENCLAVE_HOME / ENCLAVE_DB_URL / ENCLAVE_POLICIES.
"""

from __future__ import annotations

import logging
import os
import sys

import uvloop
from aiohttp import web

from enclave.config import Settings
from enclave.meter.client import state_path
from enclave.meter.proxy import Meter


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(asctime)s %(name)s] %(message)s")
    missing = [name for name in ("ENCLAVE_METER_PORT", "ENCLAVE_METER_TOKEN", "JUPYTERHUB_API_URL",
                                 "JUPYTERHUB_API_TOKEN") if not os.environ.get(name)]
    if missing:
        print(f"enclave meter: {missing[0]} is not set: run the meter as a hub service (jupyterhub_config.py)",
              file=sys.stderr)
        return 2
    settings = Settings.from_env()
    meter = Meter(settings, token=os.environ["ENCLAVE_METER_TOKEN"], hub_api_url=os.environ["JUPYTERHUB_API_URL"],
                  hub_token=os.environ["JUPYTERHUB_API_TOKEN"], state_file=state_path(settings))
    # Loopback only: the hub's proxy and the spawner reach it; containers cannot.
    # uvloop: the meter forwards every byte of every server, so its event loop is the hot path.
    web.run_app(meter.app(), host="127.0.0.1", port=int(os.environ["ENCLAVE_METER_PORT"]),
                print=None, access_log=None, handle_signals=True, loop=uvloop.new_event_loop())
    return 0


if __name__ == "__main__":
    sys.exit(main())
