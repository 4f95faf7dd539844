"""The JSON API under ``/services/enclave/api/``: one router per capability."""

from fastapi import APIRouter

from enclave.web.api import audit, catalog, egress, jobs, me, projects, register

router = APIRouter()
for _module in (me, projects, egress, jobs, catalog, audit, register):
    router.include_router(_module.router)
