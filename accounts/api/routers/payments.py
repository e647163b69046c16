"""``POST /v1/payments``: 201 applied, 200 the same payment again, 409 the same reference with another
body, 404 unknown user number, 422 a bad amount. ``POST /v1/reversals`` (operators): a negative entry
naming the original."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from ... import payments
from ...channels import Principal
from ...errors import Conflict, Invalid, NotFound, refusal
from ...money import to_cents
from ...store import Store
from ..deps import caller, get_store, operator
from ..metrics import PAID_CENTS, PAYMENTS
from ..models import PaymentIn, ReversalIn
from ..responses import FastJSON

router = APIRouter(tags=["payments"])


@router.post("/v1/payments", status_code=201, response_class=FastJSON,
             responses={200: {"description": "the same payment again (nothing changed)"},
                        404: {"description": "unknown user number"},
                        409: {"description": "the reference was used with another body"},
                        422: {"description": "bad amount or body"}})
async def post_payment(body: PaymentIn, who: Principal = Depends(caller), store: Store = Depends(get_store)):
    """Credit a payment to an account, once per (channel, channel_ref). The answer is sent after the
    commit is durable and carries the new balance."""
    code, out = await answer_payment(store, who, body.model_dump())
    return FastJSON(out, status_code=code)


async def answer_payment(store: Store, who: Principal, body: dict) -> tuple[int, dict]:
    """(HTTP status, JSON) of a validated payment body: 201 applied, 200 the same again, or a refusal."""
    try:   # queued for the store's next group commit; the event loop serves others meanwhile
        out = await payments.submit(store, body["user_number"], body["amount"], body["channel_ref"],
                                    channel=who.name, payer=body.get("payer"), awaitable=True)
    except (Conflict, NotFound, Invalid) as e:
        PAYMENTS.labels(type(e).__name__.lower()).inc()
        return refusal(e)
    PAYMENTS.labels(out["status"]).inc()
    if out["status"] == "duplicate":
        return 200, out
    PAID_CENTS.inc(to_cents(out["amount"]))
    return 201, out


@router.post("/v1/reversals", status_code=201,
             responses={200: {"description": "the same reversal again (nothing changed)"},
                        403: {"description": "not an operator"},
                        404: {"description": "no such payment"},
                        409: {"description": "the payment was already reversed under another reference"},
                        422: {"description": "the payment is itself a reversal, or a bad body"}})
def post_reversal(body: ReversalIn, response: Response, who: Principal = Depends(operator),
                  store: Store = Depends(get_store)) -> dict:
    """Reverse a payment (operators only): a negative entry of the same amount naming the original,
    credited by the nightly run like any payment; applied once per reversal reference."""
    try:
        out = payments.reverse(store, body.channel, body.channel_ref, reversal_ref=body.reversal_ref)
    except (Conflict, NotFound, Invalid) as e:
        PAYMENTS.labels(type(e).__name__.lower()).inc()
        raise
    PAYMENTS.labels("reversal" if out["status"] == "applied" else out["status"]).inc()
    if out["status"] == "duplicate":
        response.status_code = 200
    return out
