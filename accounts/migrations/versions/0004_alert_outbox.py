"""The alert outbox (one delivery per alert and recipient) and the channels' delivery targets.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("alert_id", sa.String(40), primary_key=True),
        sa.Column("base_id", sa.String(40), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("corrects", sa.String(40)),
        sa.Column("account_id", sa.String(64)),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(500)),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("queued_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS),
    )
    op.create_index("ix_outbox_due", "outbox", ["state", "next_attempt_at"])
    op.create_index("ix_outbox_base", "outbox", ["base_id"])
    op.create_index("ix_outbox_account", "outbox", ["account_id", "created_at"])
    with op.batch_alter_table("channels") as b:
        b.add_column(sa.Column("webhook_url", sa.String(500)))
        b.add_column(sa.Column("webhook_secret", sa.String(200)))      # whsec_…, as given (it must sign)
        b.add_column(sa.Column("mqtt", sa.Boolean, nullable=False, server_default=sa.false()))
        b.add_column(sa.Column("apprise_url", sa.String(500)))


def downgrade() -> None:
    with op.batch_alter_table("channels") as b:
        for c in ("apprise_url", "mqtt", "webhook_secret", "webhook_url"):
            b.drop_column(c)
    op.drop_table("outbox")
