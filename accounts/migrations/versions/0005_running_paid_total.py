"""Balances from indexed columns: each account's running total of payments (``accounts.paid_cents``,
kept by the transaction that records a payment) and the index the payments since a settled day are
summed through (``account_id, received_at``).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("paid_cents", sa.BigInteger, nullable=False, server_default="0"))
    op.execute("UPDATE accounts SET paid_cents = (SELECT coalesce(sum(p.amount_cents), 0) FROM payments p "
               "WHERE p.account_id = accounts.account_id)")
    op.create_index("ix_payments_account_received", "payments", ["account_id", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_payments_account_received", "payments")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("paid_cents")
