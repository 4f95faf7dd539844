"""Talking to the meter: route registration (the spawner) and its saved state (the web app)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from enclave.config import Settings
from enclave.errors import EnclaveError
from enclave.meter.proxy import read_state

STATE_FILE = "meter-state.json"


class MeterUnavailable(EnclaveError):
    """The meter did not answer or refused the route: the server must not start."""


def state_path(settings: Settings) -> Path:
    """Where the meter keeps its routes and counters (the hub's private folder)."""
    return settings.home / "hub" / STATE_FILE


def meter_state(settings: Settings) -> dict[str, Any] | None:
    """The dashboard's view of the meter as last saved (every few seconds), or None."""
    return read_state(state_path(settings))


async def register_route(
    meter_url: str, token: str, *, prefix: str, user: str, server: str, target: str,
    attempts: int = 20, interval: float = 0.5,
) -> dict[str, Any]:
    """Ask the meter to forward ``prefix`` to ``target``; retried while the meter starts,
    then MeterUnavailable. A refusal (unknown project or tier) raises at once."""
    body = {"prefix": prefix, "user": user, "server": server, "target": target}
    last = "no answer"
    async with httpx.AsyncClient(base_url=meter_url, timeout=10, trust_env=False,
                                 headers={"Authorization": f"token {token}"}) as client:
        for _ in range(attempts):
            try:
                response = await client.put("/_meter/routes", json=body)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
                await asyncio.sleep(interval)
                continue
            if response.status_code == 200:
                return response.json()
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise MeterUnavailable(f"the egress meter refused the server: {message}")
    raise MeterUnavailable(f"the egress meter at {meter_url} did not answer ({last}): "
                           "a server starts only behind the meter; ask an admin to check the hub's log")


async def unregister_route(meter_url: str, token: str, prefix: str) -> None:
    """Forget ``prefix`` (its server stopped). Errors are the caller's to log."""
    async with httpx.AsyncClient(base_url=meter_url, timeout=10, trust_env=False,
                                 headers={"Authorization": f"token {token}"}) as client:
        response = await client.delete("/_meter/routes", params={"prefix": prefix})
        response.raise_for_status()
