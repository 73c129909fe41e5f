"""Templates rendered without running anything: what an app or a job template becomes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from primage import templates
from primage.errors import BadRequest
from primage.models.apps import RenderedTemplate, TemplateText
from primage.server.deps import Caller, State

router = APIRouter(prefix="/templates", tags=["templates"])


@router.post("/render")
async def render(body: TemplateText, caller: Caller, state: State) -> RenderedTemplate:
    """The app or job spec a template becomes with these inputs (nothing is deployed), with
    notes on what it asks that the platform leaves out, and why."""
    if body.template is None:
        raise BadRequest("give 'template': the template's text (own YAML, TOSCA or RADL)")
    found = await run_in_threadpool(
        templates.render,
        body.template,
        body.inputs,
        body.source,
        name=body.name,
        files=body.files,
    )
    outputs = {
        k: f"{state.settings.base_url}{v}" if isinstance(v, str) and v.startswith("/apps/") else v
        for k, v in found.outputs.items()
    }
    spec = found.spec.model_dump(mode="json", exclude_defaults=True)
    spec["name"] = found.spec.name
    if spec.get("secrets"):  # shown as the apps API shows them: names only
        spec["secrets"] = dict.fromkeys(spec["secrets"], "***")
    return RenderedTemplate(kind=found.kind, spec=spec, notes=found.notes, outputs=outputs)
