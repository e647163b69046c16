"""The channels' version: ``counters`` row ``channels``, counted up by every change of a channel's key,
so that each server process drops the API keys it keeps (``accounts.channels.authenticate``) when
another process changed one.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    counters = sa.table("counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger))
    op.bulk_insert(counters, [{"name": "channels", "value": 0}])


def downgrade() -> None:
    op.execute("DELETE FROM counters WHERE name = 'channels'")
