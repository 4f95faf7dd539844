"""HTML pages: the public register, and the researcher, admin and reviewer consoles."""

from fastapi import APIRouter

from enclave.web.pages import admin, egress, jobs, public, researcher

router = APIRouter(include_in_schema=False)
for _module in (public, researcher, jobs, egress, admin):
    router.include_router(_module.router)
