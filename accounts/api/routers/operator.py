"""Operator endpoints: billing runs, health and Prometheus metrics."""
from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ... import lakeview
from ...channels import Principal
from ...store import Store
from ..deps import get_store, operator

router = APIRouter(tags=["operator"])


@router.get("/v1/runs")
def get_runs(limit: int = Query(100, ge=1, le=10_000), _: Principal = Depends(operator),
             store: Store = Depends(get_store)) -> dict:
    """Billing runs, newest day first (operators only)."""
    return {"runs": lakeview.runs(store.lake, limit)}


@router.get("/healthz")
def healthz(store: Store = Depends(get_store)) -> dict:
    """200 when the store answers (no key needed)."""
    with store.read() as conn:
        conn.execute(sa.text("SELECT 1"))
    return {"status": "ok", "database": store.engine.dialect.name}


@router.get("/metrics")
def metrics(_: Principal = Depends(operator)) -> Response:
    """Prometheus metrics (operators only)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
