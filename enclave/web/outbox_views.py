"""A researcher's own outbox file, previewed as it would leave: its canonical form, shown
by the same page parts as the review pages (``enclave.web.preview``).

Read-only: the file is read once through the outbox (no link followed, the egress size
limit applies), canonicalised in memory by the rules submission applies
(``enclave.egress.canonical``) and never stored.
"""

from __future__ import annotations

import base64
import hashlib
import json

from sqlalchemy.orm import Session

from enclave.db.models import User
from enclave.egress.canonical import CanonicalRules, canonical_bytes
from enclave.egress.policy import EgressEnv
from enclave.egress.quarantine import normalise_relpath, open_outbox
from enclave.errors import InvalidInput, NotFound
from enclave.permissions import check_member
from enclave.projects.service import get_project
from enclave.web import preview
from enclave.workspace_fs import TooLarge


def outbox_file_view(session: Session, actor: User, env: EgressEnv, slug: str, relpath: str,
                     part: int = 0) -> preview.FileView:
    """``outbox/<relpath>`` of project ``slug`` as reviewers would see it (members only)."""
    project = get_project(session, slug)
    check_member(actor, project, f"see the outbox of project {slug}")
    relpath = normalise_relpath(relpath)
    if part < 0:
        raise InvalidInput("part must be 0 or more")
    limit = env.policy.limits.max_file_bytes
    try:
        with open_outbox(env.settings, project.slug) as outbox:
            data = outbox.read_bytes(relpath, max_bytes=limit, single_link=True)
    except TooLarge:
        raise InvalidInput(f"outbox/{relpath} is over the egress limit of {limit} bytes: it could not leave, "
                           "so it is not shown; export a smaller summary") from None
    except NotFound:
        raise NotFound(f"outbox/{relpath} does not exist: save it into the project's outbox/ first") from None
    view = preview.FileView(path=relpath, kind="pending", findings=[], check_status=None, part=part)
    try:
        kind, canonical = canonical_bytes(relpath, data, CanonicalRules.of(env.disclosure))
    except InvalidInput as exc:
        view.kind, view.problem = "refused", str(exc)
        return view
    view.canonical_sha256, view.canonical_size = hashlib.sha256(canonical).hexdigest(), len(canonical)
    # The same builders as a request's file page (preview.file_view) fill the view.
    if kind in preview.IMAGE_MIME:
        view.kind = "image"
        view.image_data = f"data:{preview.IMAGE_MIME[kind]};base64,{base64.b64encode(canonical).decode()}"
    elif kind == "ipynb":
        preview._notebook(view, json.loads(canonical.decode("utf-8")))
    elif kind in ("csv", "tsv"):
        preview._table(view, canonical.decode("utf-8"), "\t" if kind == "tsv" else ",")
    else:
        preview._text(view, canonical.decode("utf-8"), markdown=kind == "md")
    if view.part >= view.parts:
        raise NotFound(f"outbox/{relpath} has {view.parts} part(s): choose a part from 0 to {view.parts - 1}")
    return view

