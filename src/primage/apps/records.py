"""An app's record: created here, whether deployed from a template or by an interactive job."""

from __future__ import annotations

import json
import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from primage.auth import audit
from primage.auth.crypto import SecretBox
from primage.auth.principal import Principal
from primage.db import tables
from primage.errors import Conflict
from primage.models.apps import AppSpec


def sealed_spec(box: SecretBox, spec: AppSpec) -> str:
    """The spec as stored: its secrets' values sealed."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    if spec.secrets:
        data["secrets"] = {k: box.seal(v) for k, v in spec.secrets.items()}
    return json.dumps(data)


def create(
    session: Session, box: SecretBox, caller: Principal, spec: AppSpec, job_id: int | None = None
) -> tables.App:
    """Store a new app, to be started by the supervisor; 409 if its name is taken."""
    row = tables.App(
        name=spec.name,
        owner_id=caller.user_id,
        spec=sealed_spec(box, spec),
        state="deploying",
        app_token=box.seal(secrets.token_urlsafe(32)),
        job_id=job_id,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # the caller's transaction is rolled back with the error
        raise Conflict(
            f"an app named '{spec.name}' exists: deploy under another name (--name), "
            f"or remove it first (primage app rm {spec.name})"
        ) from None
    by = f"job {job_id}" if job_id is not None else caller.name
    session.add(tables.AppEvent(app_id=row.id, message=f"deployed by {by}"))
    audit.record(session, caller, "app.deploy", f"app:{spec.name}")
    return row
