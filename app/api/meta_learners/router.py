"""``/v1/meta-learners``: the registry."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.api.auth.dependencies import get_tenant
from app.api.deps import RegistryDep
from app.api.meta_learners.schemas import MetaLearnerList, MetaLearnerRead
from app.api.meta_learners.service import describe, get_registered
from app.api.schemas import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1/meta-learners", tags=["meta-learners"],
                   dependencies=[Depends(get_tenant)],
                   responses={c: PROBLEM_RESPONSES[c] for c in (401, 429)})


@router.get("", operation_id="listMetaLearners", response_model=MetaLearnerList)
def list_meta_learners(registry: RegistryDep) -> MetaLearnerList:
    """List the meta-learners this deployment serves."""
    return MetaLearnerList(items=[describe(r) for r in registry.learners.values()])


@router.get("/{name}", operation_id="getMetaLearner", response_model=MetaLearnerRead,
            responses={404: PROBLEM_RESPONSES[404]})
def get_meta_learner(name: str, registry: RegistryDep) -> MetaLearnerRead:
    """Describe one meta-learner: inputs, limits, defaults and measured metrics."""
    return describe(get_registered(registry, name))
