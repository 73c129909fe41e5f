"""An app's record: created here, whether deployed from a template or by an interactive job."""

from __future__ import annotations

import datetime as dt
import json
import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from primage.auth import audit, tokens
from primage.auth.crypto import SecretBox
from primage.auth.principal import Principal
from primage.db import tables
from primage.errors import Conflict
from primage.executors.base import Executor, Pull
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


APP_PULL_DAYS = 365  # an app's pull credential: revoked when the app is removed


def pull_token_name(app_id: int) -> str:
    """The name of an app's own pull credential (``keep_pull``)."""
    return f"app-{app_id}-pull"


def keep_pull(
    session: Session, caller: Principal, executor: Executor, app_id: int, image: str, tls: bool
) -> None:
    """A pull credential of the app's own for an executor whose nodes pull its image (every
    restart, on any node, may pull it again): a read-only token of the deployer's, revoked when
    the app is removed (``revoke_pull``)."""
    lifetime = dt.timedelta(days=APP_PULL_DAYS)
    secret = tokens.issue_pull(session, caller.user_id, pull_token_name(app_id), lifetime)
    executor.keep_app_pull(app_id, image, Pull((caller.name, secret), tls_verify=tls))


def revoke_pull(session: Session, app: tables.App) -> None:
    tokens.revoke_named(session, app.owner_id, pull_token_name(app.id))
