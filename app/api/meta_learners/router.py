"""``/v1/meta-learners``: the registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam

from app.api.deps import RegistryDep
from app.api.meta_learners.schemas import MetaLearnerList, MetaLearnerRead
from app.api.meta_learners.service import describe
from app.api.schemas import problem_responses

router = APIRouter(prefix="/v1/meta-learners", tags=["meta-learners"])


@router.get("", operation_id="listMetaLearners", response_model=MetaLearnerList,
            responses=problem_responses(401, 429))
def list_meta_learners(registry: RegistryDep) -> MetaLearnerList:
    """List the meta-learners this deployment serves (newest version of each)."""
    return MetaLearnerList(items=[describe(r, registry) for r in registry.learners.values()])


@router.get("/{name}", operation_id="getMetaLearner", response_model=MetaLearnerRead,
            responses=problem_responses(401, 404, 410, 429))
def get_meta_learner(
    name: Annotated[str, PathParam(max_length=141, examples=["omniglot-protonet",
                                                             "omniglot-protonet@1.0.0"])],
    registry: RegistryDep,
) -> MetaLearnerRead:
    """Describe a meta-learner (``name`` = what the bare name serves, ``name@version`` or
    ``name@alias`` = that one, retired or not) with its versions, their states and its aliases."""
    return describe(registry.resolve(name, retired_ok=True), registry)
