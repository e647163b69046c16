"""The hot routes' handwritten body check never accepts what the FastAPI route's model refuses, and
accepts the ordinary payment bodies with the same values (what it passes on gets the model's answer)."""
import json

import pytest
from pydantic import ValidationError

from accounts.api.fastpath import payment_fields
from accounts.api.models import PaymentIn

OK = {"user_number": "1003", "amount": "25.50", "channel_ref": "ref-1"}
BODIES = [OK, {**OK, "payer": "儿子"}, {**OK, "payer": None}, {**OK, "amount": 10}, {**OK, "amount": 10.5},
          {**OK, "amount": True}, {**OK, "amount": None}, {**OK, "amount": []}, {**OK, "amount": {"v": 1}},
          {**OK, "user_number": ""}, {**OK, "user_number": "1" * 64}, {**OK, "user_number": "1" * 65},
          {**OK, "user_number": 1003}, {**OK, "channel_ref": ""}, {**OK, "channel_ref": "x" * 128},
          {**OK, "channel_ref": "x" * 129}, {**OK, "channel_ref": 7}, {**OK, "payer": ""}, {**OK, "payer": "p" * 200},
          {**OK, "payer": "p" * 201}, {**OK, "payer": 5}, {**OK, "extra": 1}, {"user_number": "1003", "amount": 1},
          {"amount": 1, "channel_ref": "r"}, [], [OK], "text", 5, None]
RAW = [json.dumps(b).encode() for b in BODIES] + [b"{not json", b"", b"{\"user_number\": \"1\"", b"\xff"]


@pytest.mark.parametrize("raw", RAW, ids=range(len(RAW)))
def test_the_fast_check_accepts_only_what_the_model_accepts(raw):
    got = payment_fields(raw)
    try:
        model = PaymentIn.model_validate_json(raw).model_dump()
    except ValidationError:
        assert got is None
        return
    if got is not None:
        assert {k: got.get(k) for k in model} == model and type(got["amount"]) is type(model["amount"])


def test_the_ordinary_bodies_take_the_fast_path():
    for body in (OK, {**OK, "payer": "儿子"}, {**OK, "amount": 10}, {**OK, "amount": 10.5}, {**OK, "payer": None}):
        assert payment_fields(json.dumps(body).encode()) == body
