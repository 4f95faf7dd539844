"""The JSON API under ``/services/enclave/api/``: one router per capability."""

from fastapi import APIRouter

from enclave.web.api import audit, catalog, egress, incidents, jobs, me, projects, register

router = APIRouter()
for _module in (me, projects, egress, jobs, catalog, audit, incidents, register):
    router.include_router(_module.router)
