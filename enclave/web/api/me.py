"""Who am I: the enclave user behind the token and the consoles the hub opens to them."""

from fastapi import APIRouter, Depends, Request

from enclave.web.auth import Identity
from enclave.web.context import acting, signed_in
from enclave.web.schemas import MeOut, UserOut

router = APIRouter(tags=["me"])

ERRORS = {401: {"description": "No valid JupyterHub token"}, 403: {"description": "Not allowed"}}


@router.get("/me", response_model=MeOut, responses=ERRORS)
def get_me(request: Request, ident: Identity = Depends(signed_in)) -> MeOut:
    """The calling user, their enclave roles and which consoles the hub grants them."""
    with acting(request, ident) as (_session, actor):
        return MeOut(user=UserOut.of(actor), admin_console=ident.is_admin, reviewer_console=ident.is_reviewer)
