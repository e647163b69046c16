"""Code that reads the clock, under faked dates: the simulator's default start and ingest's window of
plausible timestamps follow the clock they are given, on any day of the year (the demo's own calendar
test is in test_demo.py)."""
from __future__ import annotations

import datetime as dt
import json
import time
from zoneinfo import ZoneInfo

import pytest
import time_machine

from ingest.decode import decode_message
from simulator.run import parse_start

SHANGHAI = ZoneInfo("Asia/Shanghai")
DATES = ["2028-02-29T23:59:30+08:00", "2026-11-29T00:00:01+08:00", "2027-12-31T16:00:00+00:00"]


@pytest.mark.parametrize("now", DATES)
def test_simulator_default_start_is_today_in_the_lake_time_zone(now):
    clock = dt.datetime.fromisoformat(now)
    with time_machine.travel(clock, tick=False):
        start = parse_start(None, SHANGHAI)
    local = clock.astimezone(SHANGHAI)
    assert dt.datetime.fromtimestamp(start, SHANGHAI) == dt.datetime.combine(local.date(), dt.time(), SHANGHAI)


@pytest.mark.parametrize("now", DATES)
def test_ingest_window_follows_the_clock(now):
    clock = dt.datetime.fromisoformat(now)
    with time_machine.travel(clock, tick=False):
        t = int(time.time())
        assert t == int(clock.timestamp())
        recent = json.dumps({"meter_id": 7, "ts": t - 3600, "register": 12.5}).encode()
        ahead = json.dumps({"meter_id": 7, "ts": t + 400 * 86400, "register": 12.5}).encode()
        ok = decode_message("meters/v1/c1/readings", recent, t)
        bad = decode_message("meters/v1/c1/readings", ahead, t)
    assert ok.n == 1 and not ok.dead and int(ok.ts[0]) == t - 3600
    assert bad.n == 0 and [reason for _, reason, _ in bad.dead] == ["ts_out_of_range"]
