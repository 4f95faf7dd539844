"""Reading HTML form posts into the API's models, with one clear line on bad input."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel, ValidationError

from enclave.errors import InvalidInput

# Messages shown after a successful change (the page is reached by redirect: 303 See Other).
DONE = {
    "applied": "Your application was submitted. An administrator will review it.",
    "approve": "The project was approved.",
    "reject": "The application was rejected and the reason recorded.",
    "activate": "The project is now active.",
    "suspend": "The project was suspended.",
    "close": "The project was closed.",
    "member_added": "The member was added.",
    "member_removed": "The member was removed.",
    "created": "The request was created. Add files from your outbox, then submit it.",
    "files_added": "The files were added.",
    "file_removed": "The file was removed.",
    "submitted": "The request was submitted: the automated checks ran; see the findings below.",
    "withdrawn": "The request was withdrawn.",
    "voted": "Your vote was recorded.",
    "released": "The request was released.",
    "granted": "The grant was added and its view materialised.",
    "revoked": "The grant was revoked and its view deleted.",
    "job_queued": "The run is queued: it starts when the job worker picks it up. Reload this page to follow it.",
    "job_cancelled": "The run was cancelled.",
    "rerun_queued": "The rerun is queued: when the worker has run it, this page shows whether the outputs match.",
    "replied": "Your reply was recorded: reviewers see it next to the file. Resubmit when you are ready.",
    "incident_cleared": "The incident was cleared and its suspension lifted.",
    "user_enabled": "The account was enabled.",
}


def lines(value: str) -> list[str]:
    """A list typed one per line or separated by commas."""
    return [part.strip() for chunk in value.splitlines() for part in chunk.split(",") if part.strip()]


async def form_fields(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """``model`` from form data; the first problem becomes one InvalidInput line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "form"
        label = field.replace("_", " ")
        raise InvalidInput(f"{label}: {err['msg'].lower()}: correct it and send the form again") from None


def done_message(request: Request) -> str | None:
    return DONE.get(request.query_params.get("done", ""))
