"""HTML pages: the public register, and the researcher, admin and reviewer consoles."""

from fastapi import APIRouter

from enclave.web.pages import admin, admin_data, apply, egress, jobs, public, researcher

router = APIRouter(include_in_schema=False)
for _module in (public, researcher, apply, jobs, egress, admin, admin_data):
    router.include_router(_module.router)
