from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from enclave.config import Settings
from enclave.web.app import create_app
from tests.integration.web.world import authenticator, build_world, copy_world


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_world(tmp_path_factory.mktemp("web-world") / "home")


@pytest.fixture
def world(world_template: Settings, tmp_path: Path) -> Settings:
    return copy_world(world_template, tmp_path / "home")


@pytest.fixture
def client(world: Settings) -> TestClient:
    # raise_server_exceptions=False: a 500 must be seen as the user would see it.
    return TestClient(create_app(world, authenticator()), raise_server_exceptions=False)


# The notebook allowlists belong in policies/disclosure.yaml (DisclosurePolicy.notebooks). While
# the policy model predates them, canonicalisation refuses every notebook; the tests then supply
# these lists, and only then, so that the rest of the workflow can be exercised.
FALLBACK_METADATA = frozenset({"kernelspec", "language_info", "tags"})
FALLBACK_MIME_TYPES = frozenset({"text/plain", "text/html", "text/markdown", "image/png", "image/jpeg"})


@pytest.fixture(scope="session", autouse=True)
def notebook_allowlists():  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from enclave.disclosure.policy import DisclosurePolicy
    from enclave.egress.canonical import CanonicalRules, NotebookRules

    if "notebooks" in DisclosurePolicy.model_fields:
        yield
        return
    original = CanonicalRules.of
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(CanonicalRules, "of", classmethod(
            lambda cls, policy: replace(original(policy), notebooks=NotebookRules(FALLBACK_METADATA, FALLBACK_MIME_TYPES))))
        yield
