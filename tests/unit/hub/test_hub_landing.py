"""Where the hub sends people after they sign in."""

from __future__ import annotations

from enclave.hub.config import landing_url
from enclave.web.service import SERVICE_NAME


def test_hub_landing_is_the_consoles():
    assert landing_url() == f"/services/{SERVICE_NAME}/"
