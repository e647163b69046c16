"""The account store's tables (SQLAlchemy Core). Migrations (``accounts/migrations``) create and
change them; this module is the current shape the queries use.

Money is integer cents (BIGINT), instants are UTC (``received_at``), days are lake-local dates.
"""
from __future__ import annotations

import sqlalchemy as sa

from meters.outbox import outbox as _outbox

metadata = sa.MetaData()

UTC_DATETIME = sa.DateTime(timezone=True)

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),          # the customer's user number
    sa.Column("meter_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("utility", sa.String(16), nullable=False),
    sa.Column("billing_day", sa.SmallInteger, nullable=False),
    sa.Column("customer_name", sa.String(200)),                        # shown masked: 张*明
    sa.Column("opening_cents", sa.BigInteger, nullable=False),         # balance before the first settled day
    sa.Column("paid_cents", sa.BigInteger, nullable=False, server_default="0"),  # sum of all its payments
    sa.Column("created_at", UTC_DATETIME, nullable=False),
)

settings = sa.Table(                                                   # dated: a change is a new row
    "settings", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.account_id"), nullable=False),
    sa.Column("effective_from", sa.Date, nullable=False),
    sa.Column("tariff_id", sa.String(64), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("warn_1_cents", sa.BigInteger, nullable=False),
    sa.Column("warn_2_cents", sa.BigInteger, nullable=False),
    sa.Column("topup_below_cents", sa.BigInteger),                     # null: no auto top-up
    sa.Column("topup_amount_cents", sa.BigInteger),
    sa.Column("changed_at", UTC_DATETIME, nullable=False),
    sa.Column("changed_by", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("premise_area_centi", sa.BigInteger),                    # m² × 100 (heating), null: none
    sa.Index("ix_settings_account_from", "account_id", "effective_from", "id"),
)

contacts = sa.Table(                                                   # dated: add or remove, never updated
    "contacts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.account_id"), nullable=False),
    sa.Column("recipient", sa.String(200), nullable=False),
    sa.Column("relation", sa.String(64), nullable=False),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("removed", sa.Boolean, nullable=False),
    sa.Column("effective_from", sa.Date, nullable=False),
    sa.Column("changed_at", UTC_DATETIME, nullable=False),
    sa.Column("changed_by", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Index("ix_contacts_account_from", "account_id", "effective_from", "id"),
)

payments = sa.Table(
    "payments", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),  # commit-ordered (counters)
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("channel_ref", sa.String(128), nullable=False),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.account_id"), nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),          # negative: a reversal
    sa.Column("payer", sa.String(200)),
    sa.Column("received_at", UTC_DATETIME, nullable=False),            # the server's clock
    sa.Column("reverses", sa.BigInteger, sa.ForeignKey("payments.seq")),
    sa.UniqueConstraint("channel", "channel_ref", name="uq_payments_channel_ref"),
    sa.Index("ix_payments_account", "account_id", "seq"),
    sa.Index("ix_payments_received", "received_at"),
    sa.Index("ix_payments_account_received", "account_id", "received_at"),
)

counters = sa.Table(                                                   # one row per sequence: payments
    "counters", metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

settled_days = sa.Table(                                               # nightly runs: watermark read
    "settled_days", metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("watermark", sa.BigInteger, nullable=False),
    sa.Column("settled_at", UTC_DATETIME, nullable=False),
)

channels = sa.Table(                                                   # payment channels and operators
    "channels", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),                  # channel | operator
    sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("signing_secret", sa.String(128)),                       # HMAC-SHA256 secret, null: unsigned
    sa.Column("created_at", UTC_DATETIME, nullable=False),
    sa.Column("password_hash", sa.String(256)),                        # operators' console login (scrypt)
    # alert delivery (meters.outbox reads them): a webhook, the MQTT broker or an apprise URL
    sa.Column("webhook_url", sa.String(500)),
    sa.Column("webhook_secret", sa.String(200)),                       # whsec_…, as given (it must sign)
    sa.Column("mqtt", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("apprise_url", sa.String(500)),
)

console_sessions = sa.Table(                                           # operators signed in to /console
    "console_sessions", metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),        # the cookie's token, hashed
    sa.Column("operator", sa.String(64), nullable=False),
    sa.Column("expires_s", sa.BigInteger, nullable=False),             # Unix seconds; refreshed while used
    sa.Index("ix_console_sessions_expires", "expires_s"),
)

outbox = _outbox.to_metadata(metadata)                                # alerts to deliver: meters.outbox
