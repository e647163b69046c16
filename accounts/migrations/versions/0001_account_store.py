"""The account store: accounts, dated settings and contacts, payments, channels, settled days.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("meter_id", sa.BigInteger, nullable=False, unique=True),
        sa.Column("utility", sa.String(16), nullable=False),
        sa.Column("billing_day", sa.SmallInteger, nullable=False),
        sa.Column("customer_name", sa.String(200)),
        sa.Column("opening_cents", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "settings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.account_id"), nullable=False),
        sa.Column("effective_from", sa.Date, nullable=False),
        sa.Column("tariff_id", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("warn_1_cents", sa.BigInteger, nullable=False),
        sa.Column("warn_2_cents", sa.BigInteger, nullable=False),
        sa.Column("topup_below_cents", sa.BigInteger),
        sa.Column("topup_amount_cents", sa.BigInteger),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
    )
    op.create_index("ix_settings_account_from", "settings", ["account_id", "effective_from", "id"])
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.account_id"), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("relation", sa.String(64), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("removed", sa.Boolean, nullable=False),
        sa.Column("effective_from", sa.Date, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
    )
    op.create_index("ix_contacts_account_from", "contacts", ["account_id", "effective_from", "id"])
    op.create_table(
        "payments",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("channel_ref", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.account_id"), nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("payer", sa.String(200)),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("reverses", sa.BigInteger, sa.ForeignKey("payments.seq")),
        sa.UniqueConstraint("channel", "channel_ref", name="uq_payments_channel_ref"),
    )
    op.create_index("ix_payments_account", "payments", ["account_id", "seq"])
    op.create_index("ix_payments_received", "payments", ["received_at"])
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(counters, [{"name": "payments", "value": 0}])
    op.create_table(
        "settled_days",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("watermark", sa.BigInteger, nullable=False),
        sa.Column("settled_at", TS, nullable=False),
    )
    op.create_table(
        "channels",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("signing_secret", sa.String(128)),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    for name in ("channels", "settled_days", "counters", "payments", "contacts", "settings", "accounts"):
        op.drop_table(name)
