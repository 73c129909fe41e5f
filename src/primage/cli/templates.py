"""Template files read for the server: the template's text, and the files beside it that it
imports by a relative path (TOSCA ``imports``), which the server cannot read itself."""

from __future__ import annotations

from pathlib import Path

from primage.errors import BadRequest


def read_template(path: Path) -> tuple[str, dict[str, str]]:
    """The template's text and its relative imports' texts, by the path the template writes."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not text"
        raise BadRequest(f"cannot read {path}: {why}") from None
    return text, _imports_beside(path, text)


def is_tosca(text: str) -> bool:
    return any(line.startswith("tosca_definitions_version") for line in text.splitlines())


def _imports_beside(path: Path, text: str) -> dict[str, str]:
    if not is_tosca(text):
        return {}
    import yaml

    from primage.templates import import_target  # the spec models: not at every CLI start

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}  # the server says where
    files = {}
    folder = path.resolve().parent
    for entry in (document or {}).get("imports") or [] if isinstance(document, dict) else []:
        target = import_target(entry)
        if "://" in target or not target:
            continue
        beside = (folder / target).resolve()
        if beside.is_relative_to(folder) and beside.is_file():
            files[target] = beside.read_text()
    return files
