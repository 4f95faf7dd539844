"""Reading HTML form posts into the API's models, and showing what was wrong beside the
field, in the web's words, with what was typed kept.

A handler parses the form, calls its service function, and on an error the person can
correct (:func:`correctable`) renders the same page again with a :class:`FormState`:
the values as typed and the message under the field the error names (``field=`` on the
domain error), or above the form when it names none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ValidationError

from enclave.errors import Conflict, EnclaveError, InvalidInput, InvalidTransition, NotFound
from enclave.web.wording import web_message

# Messages shown after a successful change (the page is reached by redirect: 303 See Other).
DONE = {
    "applied": "Your application was submitted. An administrator will review it.",
    "approve": "The project was approved.",
    "reject": "The application was rejected and the reason recorded.",
    "activate": "The project is now active.",
    "suspend": "The project was suspended.",
    "close": "The project was closed.",
    "member_added": "The member was added.",
    "register_saved": "The register details were saved.",
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
    "created_from_run": "The request was created with the run's output files and cites the run. "
                        "Describe the files (context and controls), then submit it.",
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


async def form_lists(request: Request) -> dict[str, list[str]]:
    """Every value of every field (ticked checkboxes send one value each)."""
    form = await request.form()
    out: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            out.setdefault(key, []).append(value)
    return out


@dataclass
class FormState:
    """A form as the person left it: the values typed and what was wrong, by field
    (``""``: the form as a whole)."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def value(self, name: str, default: Any = "") -> Any:
        return self.values.get(name, default)

    def error(self, name: str) -> str | None:
        return self.errors.get(name)

    @property
    def general(self) -> str | None:
        """The error that names no field, shown above the form."""
        return self.errors.get("")


def correctable(exc: EnclaveError) -> bool:
    """Whether the person can fix ``exc`` by changing what they typed (shown in the form);
    refusals (not allowed, no such page) stay error pages."""
    return isinstance(exc, (InvalidInput, Conflict, InvalidTransition)) or (
        isinstance(exc, NotFound) and exc.field is not None)


def failed(values: dict[str, Any], exc: EnclaveError, fields: set[str] | None = None) -> FormState:
    """The form to show again after ``exc``: beside its field when the form has one."""
    name = exc.field if exc.field is not None and (fields is None or exc.field in fields) else ""
    return FormState(values=dict(values), errors={name: web_message(exc)})


def _pydantic_words(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in ("missing", "string_too_short") and ctx.get("min_length", 1) <= 1:
        return "this is needed: fill it in"
    if kind == "string_too_short":
        return f"write at least {ctx['min_length']} characters"
    if kind == "string_too_long":
        return f"write at most {ctx['max_length']} characters"
    if kind == "too_long":
        return f"give at most {ctx['max_length']} entries"
    if kind.startswith("date"):
        return "give a date, e.g. 2027-06-30"
    if kind in ("enum", "literal_error"):
        return "choose one of the options"
    if kind.startswith("int"):
        return "give a whole number"
    return str(err["msg"]).rstrip(".").lower()


def parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """``model`` from form data; the first problem becomes one InvalidInput naming its field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else ""
        label = name.replace("_", " ") or "form"
        words = _pydantic_words(err)
        raise InvalidInput(f"{label}: {words}", field=name or None, web=words) from None


def done_message(request: Request) -> str | None:
    return DONE.get(request.query_params.get("done", ""))
