"""Request bodies of the API. Money is a JSON number or string with at most 2 decimals (checked by
:func:`accounts.money.to_cents`, so the API and the CLI refuse the same amounts)."""
from __future__ import annotations

from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

Money = Union[StrictInt, StrictFloat, StrictStr]
Text = Annotated[str, Field(min_length=1, max_length=200)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PaymentIn(Body):
    user_number: Annotated[str, Field(min_length=1, max_length=64)]
    amount: Money = Field(description='e.g. 50 or "50.00"; positive, at most 2 decimals')
    channel_ref: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="the channel's own transaction id; the same id again is the same payment")
    payer: Text | None = Field(None, description="who paid (e.g. a son paying his mother's bill)")


class AutoTopupIn(Body):
    below: Money = Field(description="when the balance falls below this …")
    amount: Money = Field(description="… add this much")


class ContactIn(Body):
    recipient: Text = Field(description="channel:address, e.g. wechat:o6_bmjrPTlm6_2sgVt7hMZOPfL2M")
    relation: Annotated[str, Field(min_length=1, max_length=64)] = "self"
    language: Annotated[str, Field(min_length=1, max_length=16)] = Field(
        "zh-CN", description="zh-CN or en (a recipient ending in @zh-CN or @en sets it too)")


class WarningsIn(Body):
    levels: Annotated[list[Money], Field(min_length=2, max_length=2)] = Field(
        description="[level 1, level 2] with level 2 ≤ level 1")


class ReversalIn(Body):
    channel: Annotated[str, Field(min_length=1, max_length=64)] = Field(description="the original payment's channel")
    channel_ref: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="the original payment's reference")
    reversal_ref: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        None, description="the reversal's own reference (default reversal:<channel_ref>); the same again is "
                          "the same reversal")
