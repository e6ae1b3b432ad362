"""Helpers the resource routes share: 422s that name the field, 404s, PATCH merges.

A PATCH body holds only the fields to change; it is merged over the stored
record and the result validated as a whole, so a PATCH can never store what a
POST would refuse, and its errors name the field like any other 422.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from harness.errors import ResourceNotFound

__all__ = ["body_error", "found", "merged", "patch_model"]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def body_error(field: str | tuple[str | int, ...], message: str, value: Any = None) -> Exception:
    """A 422 for one field of the request body."""
    loc = (field,) if isinstance(field, str) else field
    return RequestValidationError(
        [{"loc": ("body", *loc), "type": "value_error", "msg": message, "input": value}]
    )


async def found(lookup: Awaitable[T]) -> T:
    """The looked-up resource, or a 404 naming its kind and id."""
    try:
        return await lookup
    except ResourceNotFound as exc:
        raise HTTPException(404, str(exc)) from exc


def merged(model: type[M], stored: dict[str, Any], patch: BaseModel) -> M:
    """``stored`` with the fields ``patch`` sets replaced, validated as ``model``."""
    data = {**stored, **patch.model_dump(exclude_unset=True)}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from exc


def patch_model(
    name: str, model: type[BaseModel], doc: str, *, omit: tuple[str, ...] = ()
) -> type[BaseModel]:
    """A PATCH body for ``model``: the same fields, each optional, unknown keys refused."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        if field_name in omit:
            continue
        copy = info._copy()  # noqa: SLF001 - pydantic has no public "copy a FieldInfo"
        copy.default = None
        copy.default_factory = None
        fields[field_name] = (info.annotation | None, copy)  # type: ignore[operator]
    patch: type[BaseModel] = create_model(
        name, __config__=ConfigDict(extra="forbid"), __doc__=doc, **fields
    )
    return patch
