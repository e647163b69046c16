"""Arrow schemas of every lake table, defined once and imported everywhere.

Storage conventions (see docs/lake.md):
- Timestamps are stored in UTC (``timestamp[s|ms, tz=UTC]``); the lake's time zone defines days.
- Registers and interval quantities from devices are stored as exact integers in thousandths of the
  meter's unit (Wh, litres): ``register_milli``. The ``readings`` view exposes ``register`` DOUBLE.
  float32 cannot hold a register; float64 of thousandths is exact, integers compress better.
- Money is ``decimal128(18, 2)`` (exact cents). Unit prices are float64 (CNY per unit).
- A table partitioned by ``day`` or ``month`` does not store that column in its files: it comes
  from the hive directory name (``day=2026-11-23``).
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

UTC_S = pa.timestamp("s", tz="UTC")
UTC_MS = pa.timestamp("ms", tz="UTC")
MONEY = pa.decimal128(18, 2)

UTILITIES = ("electricity", "water", "gas", "heat")
UNITS = {"electricity": "kWh", "water": "m3", "gas": "m3", "heat": "kWh"}
MODES = ("prepaid", "postpaid")
QUALITIES = ("actual", "estimated", "substituted", "missing")
LEDGER_KINDS = ("opening", "charge", "topup", "auto_topup", "adjustment")
ALERT_KINDS = ("low_balance", "auto_topup", "arrears", "disconnect", "reconnect", "data_gap",
               "bill_issued", "payment", "disconnect_held", "estimated_day")
OPERATOR_KINDS = ("data_gap", "disconnect_held", "estimated_day")   # to the operator channel only

# Largest valid meter id (CONTRACTS: 1 .. 2^63-1).
METER_ID_MAX = 2**63 - 1


@dataclass(frozen=True)
class Table:
    """A lake table: its Arrow schema (without partition columns) and hive partition key."""

    name: str
    schema: pa.Schema
    partition: str | None = None  # "day" (YYYY-MM-DD) or "month" (YYYY-MM) or None
    doc: str = ""


READINGS = pa.schema([
    pa.field("meter_id", pa.int64(), nullable=False),
    pa.field("ts", UTC_S, nullable=False),                  # instant read: end of the interval it closes
    pa.field("register_milli", pa.int64()),                 # cumulative register, thousandths of unit
    pa.field("quantity_milli", pa.int64()),                 # interval data (imports): consumption in interval
    pa.field("interval_s", pa.int32()),                     # interval length for quantity rows
    pa.field("quality", pa.string()),                       # source quality flag (NEM12 A/E/S/F…), null = device
    pa.field("sender", pa.string()),                        # topic sender id, or "import:<format>"
    pa.field("received_at", UTC_MS),
])

HEAT_READINGS = pa.schema([                                  # a heat meter's optional columns, beside its readings
    pa.field("meter_id", pa.int64(), nullable=False),
    pa.field("ts", UTC_S, nullable=False),                  # the reading's ts (joins readings on meter_id, ts)
    pa.field("flow_temp_centi", pa.int16()),                # supply (flow) temperature, hundredths of a °C
    pa.field("return_temp_centi", pa.int16()),              # return temperature, hundredths of a °C
    pa.field("volume_milli", pa.int64()),                   # cumulative volume register, litres
    pa.field("received_at", UTC_MS),
])

DEADLETTER = pa.schema([
    pa.field("received_at", UTC_MS, nullable=False),
    pa.field("topic", pa.string()),
    pa.field("payload", pa.binary()),
    pa.field("reason", pa.string(), nullable=False),        # short machine-readable reason code
    pa.field("detail", pa.string()),                        # human-readable explanation
])

METERS = pa.schema([
    pa.field("meter_id", pa.int64(), nullable=False),
    pa.field("external_id", pa.string()),                   # NMI, MPAN, usage point, LCLid …
    pa.field("utility", pa.string(), nullable=False),
    pa.field("unit", pa.string(), nullable=False),
    pa.field("concentrator", pa.string()),                  # data concentrator / sender id
    pa.field("region", pa.string()),
    pa.field("register_max", pa.float64()),                 # register wraps to 0 at this value (e.g. 1e6)
])

ACCOUNTS = pa.schema([
    pa.field("account_id", pa.string(), nullable=False),    # the customer's user number
    pa.field("meter_id", pa.int64(), nullable=False),
    pa.field("tariff_id", pa.string(), nullable=False),
    pa.field("mode", pa.string(), nullable=False),          # prepaid | postpaid
    pa.field("billing_day", pa.int8(), nullable=False),     # 1..28
    pa.field("balance", MONEY),                             # opening prepaid balance
    pa.field("warn_1", MONEY),                              # first low-balance level (default 30)
    pa.field("warn_2", MONEY),                              # second level (default 20)
    pa.field("topup_below", MONEY),                         # auto top-up trigger, null = none
    pa.field("topup_amount", MONEY),
    pa.field("premise_area", pa.decimal128(12, 2)),         # m² of the premise (heating tariffs), null = none
])

CONTACTS = pa.schema([
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("recipient", pa.string(), nullable=False),
    pa.field("relation", pa.string(), nullable=False),      # self, daughter, son, family …
    pa.field("language", pa.string()),                       # zh-CN (null: the default) or en
])

TARIFFS = pa.schema([
    pa.field("tariff_id", pa.string(), nullable=False),
    pa.field("utility", pa.string(), nullable=False),
    pa.field("unit", pa.string(), nullable=False),
    pa.field("currency", pa.string(), nullable=False),
    pa.field("description", pa.string()),
    pa.field("effective_from", pa.date32()),
    pa.field("source", pa.string()),
    pa.field("definition", pa.string()),                    # the full tariff model as JSON
])

INTERVALS = pa.schema([
    pa.field("meter_id", pa.int64(), nullable=False),
    pa.field("ts", UTC_S, nullable=False),                  # interval end
    pa.field("quantity", pa.float64(), nullable=False),
    pa.field("quality", pa.string(), nullable=False),       # actual | estimated | substituted …
    pa.field("flag", pa.string()),                          # VEE reason: gap, spike, rollover, replacement …
])

CHARGES = pa.schema([
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("quantity", pa.float64(), nullable=False),
    pa.field("amount", MONEY, nullable=False),
    pa.field("tariff_id", pa.string()),
    pa.field("run_id", pa.string()),
    pa.field("estimated", pa.bool_()),                      # most of the day's intervals were estimated
])

BILLS = pa.schema([
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("period_start", pa.date32(), nullable=False),
    pa.field("period_end", pa.date32(), nullable=False),
    pa.field("quantity", pa.float64(), nullable=False),
    pa.field("amount", MONEY, nullable=False),
    pa.field("due_date", pa.date32()),
    pa.field("run_id", pa.string()),
    pa.field("partial", pa.bool_()),                        # the account's first bill: billed from period_start only
    pa.field("estimated", pa.bool_()),                      # most intervals of its closing day were estimated
])

BILL_LINES = pa.schema([
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("period_start", pa.date32(), nullable=False),
    pa.field("tier", pa.int32(), nullable=False),           # 1-based; 0 = fixed / minimum charge line
    pa.field("band", pa.string(), nullable=False),          # TOU band name, "all" for untimed tariffs
    pa.field("quantity", pa.float64(), nullable=False),
    pa.field("unit_price", pa.float64()),
    pa.field("amount", MONEY, nullable=False),
])

LEDGER = pa.schema([
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("ts", UTC_MS, nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("amount", MONEY, nullable=False),              # + credit (payment), - debit (charge)
    pa.field("balance_after", MONEY, nullable=False),
    pa.field("ref", pa.string()),                           # payment reference / charge day / run id
])

PAYMENTS = pa.schema([                                      # the account store's payments, by credited day
    pa.field("seq", pa.int64(), nullable=False),            # commit order
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("amount", MONEY, nullable=False),              # negative: a reversal
    pa.field("received_at", UTC_MS, nullable=False),        # the server's clock
    pa.field("channel", pa.string(), nullable=False),
    pa.field("channel_ref", pa.string(), nullable=False),
    pa.field("payer", pa.string()),
    pa.field("reverses", pa.int64()),                       # seq of the payment a reversal names
])

ALERTS = pa.schema([
    pa.field("account_id", pa.string()),
    pa.field("ts", UTC_MS, nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("recipient", pa.string(), nullable=False),     # phone / operator
    pa.field("message", pa.string(), nullable=False),
    pa.field("alert_id", pa.string()),                       # stable: meters.outbox.alert_id
    pa.field("language", pa.string()),                       # the recipient's: zh-CN or en
    pa.field("data", pa.string()),                           # JSON: the values the templates show
])

CHARGE_LINES = pa.schema([                                  # billing: a day's charge by tier and band
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("tier", pa.int32(), nullable=False),           # 1-based; 0 = fixed / minimum charge
    pa.field("band", pa.string(), nullable=False),
    pa.field("quantity", pa.float64(), nullable=False),
    pa.field("amount", pa.float64(), nullable=False),       # unrounded currency (bills round per line)
    pa.field("unit_price", pa.float64()),
])

BILLING_STATE = pa.schema([                                 # billing: carried state after a settled day
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("meter_id", pa.int64(), nullable=False),
    pa.field("base_ts", UTC_S),                             # last accepted register reading (null: none)
    pa.field("base_reg_milli", pa.int64()),
    pa.field("avg_milli", pa.float64()),                    # profile: mean quantity per interval (<0: none)
    pa.field("pending_milli", pa.float64()),                # estimated since base_ts, to true-up
    pa.field("step", pa.int32()),                           # the meter's reading step in intervals (0: unknown)
    pa.field("bill_start", pa.int64()),                     # tariff engine CycleState (billing/engine.py) …
    pa.field("cycle_key", pa.int64()),                      # tier cycle (year, or period start day)
    pa.field("cycle_qty", pa.float64()),                    # tier counter at the start of the open period
    pa.field("period_qty", pa.list_(pa.float64())),         # [P] period to date by tariff period
    pa.field("line_qty", pa.list_(pa.float64())),           # [P × T]
    pa.field("line_amount", pa.list_(pa.float64())),        # [P × T]
    pa.field("fixed", pa.float64()),
    pa.field("days", pa.int32()),
    pa.field("charged", pa.float64()),
    pa.field("last_ts", pa.int64()),                        # … last local interval time priced
    pa.field("year_end", pa.float64()),                     # annual counter at a New-Year reset inside the open period (-1/null: none)
    pa.field("charged_cents", pa.int64()),                  # cents charged so far in the open period
    pa.field("balance", MONEY, nullable=False),             # prepaid balance / postpaid paid − billed
    pa.field("level", pa.int8()),                           # low-balance level reached: 0, 1 (warn_1), 2 (warn_2)
    pa.field("arrears_since", pa.date32()),
    pa.field("disconnected", pa.bool_()),
    pa.field("due_date", pa.date32()),                      # postpaid: due date of the oldest unpaid bill
    pa.field("period_start", pa.date32()),                  # postpaid: start of the open bill period
    pa.field("billed_from", pa.date32()),                   # the account's first billed day
    pa.field("heat_season_milli", pa.int64()),              # heating: season heat read to date (milli-kWh; −1/null: unknown)
    pa.field("heat_billed_milli", pa.int64()),              # heating: … up to the season's last bill
])

RUNS = pa.schema([                                          # billing: one record per run of a day (audit)
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("started_at", UTC_MS, nullable=False),
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("accounts", pa.int64()),
    pa.field("readings_in", pa.int64()),
    pa.field("intervals_out", pa.int64()),
    pa.field("charges_out", pa.int64()),
    pa.field("ledger_out", pa.int64()),
    pa.field("alerts_out", pa.int64()),
    pa.field("bills_out", pa.int64()),
    pa.field("money", MONEY),                               # sum of the day's charges
    pa.field("vee_counts", pa.string()),                    # JSON {outcome: intervals}
    pa.field("finished_at", UTC_MS),                        # audit: every run is kept (one file per run)
    pa.field("who", pa.string()),                           # user@host that ran it
    pa.field("outcome", pa.string()),                       # settled / estimated (--allow-estimates) / failed
    pa.field("coverage", pa.float64()),                     # share of meters with readings in the day
    pa.field("estimated_intervals", pa.int64()),
])

TABLES: dict[str, Table] = {t.name: t for t in [
    Table("readings", READINGS, "day", "raw meter readings as received (may hold duplicates)"),
    Table("heat_readings", HEAT_READINGS, "day", "heat meters' flow and return temperatures and volume (optional)"),
    Table("deadletter", DEADLETTER, "day", "payloads or rows that failed validation, with a reason"),
    Table("meters", METERS, None, "meter registry"),
    Table("accounts", ACCOUNTS, None, "customer accounts (user numbers)"),
    Table("contacts", CONTACTS, None, "alert recipients per account"),
    Table("tariffs", TARIFFS, None, "tariff catalog: built-in and imported"),
    Table("intervals", INTERVALS, "day", "validated and estimated interval consumption"),
    Table("charges", CHARGES, "day", "one row per account and billing day"),
    Table("bills", BILLS, "month", "postpaid period bills"),
    Table("bill_lines", BILL_LINES, "month", "bill lines by tier and band"),
    Table("ledger", LEDGER, "month", "append-only account ledger"),
    Table("alerts", ALERTS, "day", "customer and operator alerts"),
    Table("payments", PAYMENTS, "day", "payments from the account store, by the day that credited them"),
    Table("charge_lines", CHARGE_LINES, "day", "a day's charges by tier and band (bill line input)"),
    Table("billing_state", BILLING_STATE, "day", "carried billing state after each settled day"),
    Table("runs", RUNS, "day", "billing run records"),
]}


def table(name: str) -> Table:
    """Return the :class:`Table` named ``name`` or raise a clear error."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown lake table {name!r}; known: {', '.join(TABLES)}") from None
