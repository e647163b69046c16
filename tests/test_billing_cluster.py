"""`bill --cluster local:N`: the day mapped over meter shards with dask.distributed is identical to
the cent to the single-process run (and so are every other output and the carried state)."""
from __future__ import annotations

import datetime as dt

import pytest

pytest.importorskip("dask.distributed")
pytest.importorskip("simulator.engine")

from billing.batch import bill_range  # noqa: E402
from meters.errors import MetersError  # noqa: E402
from test_billing_simulated import D0, simulated_lake  # noqa: E402


def rows(lake, name):
    t = lake.read(name)
    t = t.drop_columns([c for c in ("run_id", "day", "month") if c in t.column_names])
    return sorted(t.to_pylist(), key=repr)


def test_cluster_run_identical_to_single_process(tmp_path):
    faults = "lost=0.02,duplicate=0.02,spike=0.003,replacement=0.05"
    one, _ = simulated_lake(tmp_path / "one", faults, n=120)
    many, _ = simulated_lake(tmp_path / "many", faults, n=120)
    last = D0 + dt.timedelta(days=1)
    a = bill_range(one, D0, last)
    b = bill_range(many, D0, last, cluster="local:2")
    assert [r.money_cents for r in a] == [r.money_cents for r in b]
    assert [r.vee for r in a] == [r.vee for r in b]
    for name in ("ledger", "charges", "charge_lines", "alerts", "billing_state", "intervals", "bills"):
        assert rows(one, name) == rows(many, name), name


def test_cluster_spec_errors(tmp_path):
    lake, _ = simulated_lake(tmp_path / "x", "none", n=10)
    for spec in ("local:0", "local:x", "yarn://q"):
        with pytest.raises(MetersError, match="--cluster"):
            bill_range(lake, D0, D0, cluster=spec)


def test_worker_killed_mid_billing_is_retried_identically(tmp_path):
    """A worker process dies (SIGKILL) as it starts a shard task; Dask reruns the task on a live (or the
    restarted) worker and the day's outputs are still identical to the single-process run."""
    from dask.distributed import Client, LocalCluster, WorkerPlugin

    marker = tmp_path / "killed"

    class KillOnce(WorkerPlugin):
        """Kills its own worker process the first time any worker starts executing a shard task."""

        def __init__(self, path):
            self.path = str(path)

        def transition(self, key, start, finish, **kw):
            import os
            import signal
            name = key[0] if isinstance(key, tuple) else str(key)
            if finish == "executing" and "shard_day" in name:
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    return
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)

    one, _ = simulated_lake(tmp_path / "one", "lost=0.02,spike=0.003", n=80)
    many, _ = simulated_lake(tmp_path / "many", "lost=0.02,spike=0.003", n=80)
    a = bill_range(one, D0, D0)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        pids_before = set(client.run(lambda: __import__("os").getpid()).values())
        client.register_plugin(KillOnce(marker))
        b = bill_range(many, D0, D0, cluster=cluster.scheduler_address)
    killed = int(marker.read_text())
    assert killed in pids_before                      # a worker really died mid-run
    assert [r.money_cents for r in a] == [r.money_cents for r in b] and a[0].money_cents != 0
    for name in ("ledger", "charges", "charge_lines", "alerts", "billing_state", "intervals", "bills"):
        assert rows(one, name) == rows(many, name), name
    # the shards wrote their own intervals files; only the switched-in ones remain
    import json
    d = many.partition_dir("intervals", D0.isoformat())
    assert sorted(p.name for p in many.files("intervals", D0.isoformat())) == json.loads((d / "_current").read_text())
    assert len(json.loads((d / "_current").read_text())) == 4             # 2 shards per worker
