"""Paginated lists: one response shape and one pair of query parameters for every list."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

__all__ = ["Page", "PageDep", "PageParams", "page_of"]

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first, and how many items match in all."""

    items: list[T]
    total: int
    limit: int
    offset: int


class PageParams(BaseModel):
    limit: int
    offset: int


def page_of(items: list[T], total: int, params: PageParams) -> Page[T]:
    """The page of ``items`` that ``params`` asked for, out of ``total``."""
    return Page(items=items, total=total, limit=params.limit, offset=params.offset)


def _page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="items per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(_page_params)]
