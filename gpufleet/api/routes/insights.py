"""/predictions/failure, /forecasts/demand, /capacity/plan: the analytics' current outputs."""

from __future__ import annotations

from fastapi import APIRouter, Query

from gpufleet.api.deps import Ctx
from gpufleet.api.schemas import CapacityPlanPublic, FailurePredictionPublic, ForecastPublic, Page

router = APIRouter(tags=["insights"])


@router.get("/predictions/failure", response_model=Page[FailurePredictionPublic])
def failure_predictions(ctx: Ctx, horizon: str | None = None, min_probability: float = Query(0.0, ge=0, le=1),
                        limit: int = Query(100, ge=1, le=100_000), offset: int = Query(0, ge=0, le=2**31 - 1)) -> Page[FailurePredictionPublic]:
    """Failure probability per GPU and horizon, riskiest first, with the signals that drove each score."""
    rows = [r for r in ctx.fleet.predictions()
            if (horizon is None or r["horizon"] == horizon) and r["probability"] >= min_probability]
    return Page[FailurePredictionPublic](items=[FailurePredictionPublic(**r) for r in rows[offset:offset + limit]],
                                         total=len(rows), limit=limit, offset=offset)


@router.get("/forecasts/demand", response_model=list[ForecastPublic])
def demand_forecast(ctx: Ctx) -> list[ForecastPublic]:
    """The latest demand forecast per series (quantiles over the forecast horizon)."""
    return [ForecastPublic(**f) for f in ctx.fleet.forecast.get("series", [])]


@router.get("/capacity/plan", response_model=CapacityPlanPublic)
def capacity_plan(ctx: Ctx) -> CapacityPlanPublic:
    """The capacity planner's latest recommendation (reserved / on-demand / spot)."""
    plan = ctx.fleet.plan
    return CapacityPlanPublic(generated_at=plan.get("generated_at"), recommendation=plan.get("recommendation", {}))
