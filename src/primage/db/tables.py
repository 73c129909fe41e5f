"""Table definitions (SQLAlchemy 2). The Alembic migrations in ``migrations/`` follow them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timestamps stored as naive UTC everywhere and handed back timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Why the account may not be used now (e.g. it left the provider's required group); its
    # tokens and sessions stop working while set.
    suspended_reason: Mapped[str | None] = mapped_column(Text)

    # Relationships below load on first use: eager loading chained through owners, groups and
    # members turned one space lookup into several queries on every request.
    groups: Mapped[list[Group]] = relationship(
        secondary="group_members", back_populates="members", lazy="select"
    )


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list[User]] = relationship(
        secondary="group_members", back_populates="groups", lazy="select"
    )


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # The identity provider that keeps this membership in step with its entitlements; None for
    # memberships admins manage by hand.
    provider: Mapped[str | None] = mapped_column(String(32))


class Identity(Base):
    """A person at a trusted identity provider, linked to the platform user they log in as."""

    __tablename__ = "identities"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)  # voperson_id, else sub
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    email: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(lazy="joined")


class WebSession(Base):
    """A browser's login. Only the SHA-256 of the cookie is kept; the provider's refresh token,
    used to re-check group membership, is kept encrypted."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    csrf_token: Mapped[str] = mapped_column(String(64))
    refresh_token: Mapped[str | None] = mapped_column(Text)  # encrypted
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    checked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(lazy="joined")


class LoginRequest(Base):
    """A web login between the redirect to the provider and its callback (single use)."""

    __tablename__ = "login_requests"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    code_verifier: Mapped[str] = mapped_column(String(128))
    nonce: Mapped[str] = mapped_column(String(64))
    next_url: Mapped[str] = mapped_column(Text, default="/")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Token(Base):
    """A platform API token. Only the SHA-256 of its secret is kept."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("tokens.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    space: Mapped[str | None] = mapped_column(String(64))
    path_prefix: Mapped[str | None] = mapped_column(Text)
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship(lazy="joined")


class Space(Base):
    __tablename__ = "spaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # Kept by storage.quota: bytes of its files (reconciled with the disk), and bytes that
    # uploads in flight have reserved; used + reserved never exceeds the quota.
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reserved_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    owner: Mapped[User] = relationship(lazy="joined")
    # Loaded on first use: the owner's own requests never need the member list.
    members: Mapped[list[SpaceMember]] = relationship(
        lazy="select", cascade="all, delete-orphan", passive_deletes=True
    )


class SpaceMember(Base):
    """A user or a group given a role on a space (the owner is implicit)."""

    __tablename__ = "space_members"

    space_id: Mapped[int] = mapped_column(
        ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True
    )
    subject_kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # "user" | "group"
    subject_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))


class FileChecksum(Base):
    """SHA-256 of a file as uploaded; valid while the file's size and mtime are unchanged."""

    __tablename__ = "file_checksums"

    space_id: Mapped[int] = mapped_column(
        ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class Job(Base):
    """A submitted job; its spec is kept as JSON exactly as validated."""

    __tablename__ = "jobs"
    # Ids are never reused (SQLite would otherwise reuse the highest after a delete), so a new
    # job never meets an old job's outputs/<id> folder.
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy's declaration)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    spec: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    executor: Mapped[str] = mapped_column(String(32))
    output_space: Mapped[str | None] = mapped_column(String(64), index=True)
    output_path: Mapped[str | None] = mapped_column(Text)
    spaces: Mapped[str] = mapped_column(Text, default=",")  # mounted spaces: ",a,b,"
    # The space (and folder) the submitting token was confined to: changing the job needs as much.
    confined_space: Mapped[str | None] = mapped_column(String(64))
    confined_path: Mapped[str | None] = mapped_column(Text)
    image: Mapped[str | None] = mapped_column(String(512))  # pinned: repository@sha256:…
    task_count: Mapped[int] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    owner: Mapped[User] = relationship(lazy="joined")


class Task(Base):
    """One unit of work of a job (job id + index): its inputs, state, and where it runs."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_job_state", "job_id", "state"),
        Index("ix_tasks_state_job_index", "state", "job_id", "index"),
    )

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    inputs: Mapped[str] = mapped_column(Text, default="")  # relative paths, newline-separated
    state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # times handed to the executor
    failures: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # retry backoff
    external_id: Mapped[str | None] = mapped_column(String(255))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Who did what to which resource, and when; written in the transaction of the change."""

    __tablename__ = "audit_events"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy's declaration)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)  # a name: kept if the user goes
    token_id: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32), index=True)  # e.g. "space.share"
    target: Mapped[str] = mapped_column(Text, index=True)  # e.g. "space:ct", "job:3"
    detail: Mapped[str] = mapped_column(Text, default="")  # JSON


class Build(Base):
    """An image built from a git repository, tested in itself, then pushed (or not)."""

    __tablename__ = "builds"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy's declaration)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    source: Mapped[str] = mapped_column(Text)  # a git URL
    ref: Mapped[str | None] = mapped_column(String(255))
    commit: Mapped[str | None] = mapped_column(String(64))
    context: Mapped[str] = mapped_column(Text, default=".")  # a folder of the repository
    dockerfile: Mapped[str] = mapped_column(Text, default="Dockerfile")  # in the context
    tag: Mapped[str] = mapped_column(String(512))  # namespace/repository:tag in the registry
    test_command: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    digest: Mapped[str | None] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    owner: Mapped[User] = relationship(lazy="joined")


class BuildHook(Base):
    """A repository whose pushes start builds (GitHub or GitLab webhooks)."""

    __tablename__ = "build_hooks"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy's declaration)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(Text)  # the git URL builds clone
    tag: Mapped[str] = mapped_column(String(512))  # may use {branch} and {commit}
    context: Mapped[str] = mapped_column(Text, default=".")
    dockerfile: Mapped[str] = mapped_column(Text, default="Dockerfile")
    test_command: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)  # sealed (SecretBox): checks the signatures
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    owner: Mapped[User] = relationship(lazy="joined")


class App(Base):
    """A deployed application: the spec it serves, and the one an update is rolling out."""

    __tablename__ = "apps"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy's declaration)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    spec: Mapped[str] = mapped_column(Text)  # JSON, its secrets sealed (SecretBox)
    pending_spec: Mapped[str | None] = mapped_column(Text)  # an update not yet serving
    generation: Mapped[int] = mapped_column(Integer, default=1)  # of ``spec``
    state: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    app_token: Mapped[str] = mapped_column(Text)  # sealed: the proxy's credential at the app
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_activity_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The interactive job this app serves: its one task follows the app, and ends with it.
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))

    owner: Mapped[User] = relationship(lazy="joined")


class AppInstance(Base):
    """One running copy of an app's generation, and where to find it again after a restart."""

    __tablename__ = "app_instances"

    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str | None] = mapped_column(String(255))  # PID:start-time
    port: Mapped[int | None] = mapped_column(Integer)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    ever_ready: Mapped[bool] = mapped_column(Boolean, default=False)
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # restart backoff
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    message: Mapped[str] = mapped_column(Text, default="")


class AppEvent(Base):
    """Something that happened to an app, for ``primage app show``."""

    __tablename__ = "app_events"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 (SQLAlchemy's declaration)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    message: Mapped[str] = mapped_column(Text)
