"""The model catalog as a request dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.catalog.catalog import Catalog, get_catalog

CatalogDep = Annotated[Catalog, Depends(get_catalog)]
