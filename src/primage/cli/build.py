"""``primage build``: images built from git, tested in themselves, pushed to the registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from primage.cli.common import JsonOption, client, group, print_json, table
from primage.errors import BadRequest, PrimageError

app = group("Build images from git repositories.")


def _source(value: str, context: str) -> tuple[str, str]:
    """The git URL and the context to build. A local folder becomes a file:// URL (the server
    clones it on this machine); a folder inside a repository, that repository's root with the
    folder as the context (what is committed is built, as from any clone)."""
    path = Path(value).expanduser()
    if not path.is_dir():
        return value, context
    found = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True
    )
    if found.returncode != 0:
        raise BadRequest(f"{value} is not in a git repository: git init, commit, and try again")
    root = Path(found.stdout.strip())
    inner = path.resolve().relative_to(root.resolve()).as_posix()
    if inner != "." and context != ".":
        inner = f"{inner}/{context}"
    return root.as_uri(), inner if inner != "." else context


@app.command()
def start(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="A git URL, or a local repository folder."),
    tag: str = typer.Option(..., help="namespace/repository:tag, e.g. alice/seg:1.0."),
    ref: str | None = typer.Option(None, help="Branch, tag or commit."),
    context: str = typer.Option(
        ".", help="Folder of the repository to build from (set for you from a local folder)."
    ),
    dockerfile: str = typer.Option("Dockerfile", help="Path of the Dockerfile in the context."),
    test: str | None = typer.Option(None, help="Command run in the built image; must pass."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream the log until it ends."),
) -> None:
    """Build, test in the built image, and push only if all passed."""
    sdk = client(ctx)
    url, context = _source(source, context)
    made = sdk.start_build(
        url, tag, ref=ref, context=context, dockerfile=dockerfile, test_command=test
    )
    typer.echo(f"build {made.id} queued: primage build logs {made.id} --follow", err=True)
    if follow:
        for chunk in sdk.build_logs(made.id, follow=True):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        done = sdk.wait_build(made.id)
        if done.state != "succeeded":
            raise PrimageError(f"build {made.id} failed: {done.message}")
        typer.echo(f"build {made.id} pushed {done.tag} ({done.digest})")


@app.command("ls")
def list_(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Your builds, newest first."""
    found = client(ctx).list_builds()
    if as_json:
        print_json(found)
        return
    rows = [
        (b.id, b.state, b.tag, (b.commit or "")[:10], b.digest and b.digest[:19],
         f"{b.duration_s:.0f}s" if b.duration_s is not None else "")
        for b in found
    ]  # fmt: skip
    table(("ID", "STATE", "TAG", "COMMIT", "DIGEST", "TOOK"), rows)


@app.command()
def show(ctx: typer.Context, build_id: int, as_json: bool = JsonOption) -> None:
    """One build: state, commit, digest, duration, and why it failed."""
    found = client(ctx).build(build_id)
    if as_json:
        print_json(found)
        return
    took = f"{found.duration_s:.0f} s" if found.duration_s is not None else ""
    table(
        ["", ""],
        [
            ("build", found.id),
            ("state", found.state),
            ("tag", found.tag),
            ("source", found.source + (f" ({found.ref})" if found.ref else "")),
            ("context", found.context),
            ("commit", found.commit or ""),
            ("digest", found.digest or ""),
            ("by", found.owner),
            ("queued", f"{found.created_at:%Y-%m-%d %H:%M:%S} UTC"),
            ("took", took),
            ("message", found.message),
        ],
    )
    if found.state == "failed":
        typer.echo(f"the whole log: primage build logs {found.id}")


@app.command()
def logs(
    ctx: typer.Context,
    build_id: int,
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the build ends."),
) -> None:
    """A build's log (clone, build, tests, push)."""
    for chunk in client(ctx).build_logs(build_id, follow=follow):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()


hooks = group("Repositories whose pushes start builds (GitHub, GitLab).")
app.add_typer(hooks, name="hook")


@hooks.command("add")
def add_hook(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="The git URL builds clone."),
    tag: str = typer.Option(..., help="namespace/repository:tag; {branch} and {commit} work."),
    context: str = typer.Option(".", help="Folder of the repository to build from."),
    dockerfile: str = typer.Option("Dockerfile", help="Path of the Dockerfile in the context."),
    test: str | None = typer.Option(None, help="Command run in the built image; must pass."),
) -> None:
    """Register a repository: prints the webhook URLs and the secret (shown once)."""
    made = client(ctx).add_build_hook(
        source, tag, context=context, dockerfile=dockerfile, test_command=test
    )
    typer.echo(f"GitHub: payload URL {made.github_url} (application/json), secret below")
    typer.echo(f"GitLab: URL {made.gitlab_url}, secret token below")
    typer.echo(made.secret)


@hooks.command("ls")
def list_hooks(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Your registered repositories."""
    found = client(ctx).list_build_hooks()
    if as_json:
        print_json(found)
        return
    table(
        ("ID", "SOURCE", "TAG", "GITHUB URL"),
        [(h.id, h.source, h.tag, h.github_url) for h in found],
    )
