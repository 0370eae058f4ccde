"""One policy shared by many threads: rewrites from 8 threads at once give
exactly what they give one at a time, and run in parallel (the GIL is
released during a rewrite)."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import sqlsandbox
from conftest import POLICIES

QUERIES = [
    "SELECT a.plan, sum(o.total) FROM accounts a JOIN orders o ON o.account_id = a.id GROUP BY a.plan",
    "SELECT status, count(*) FROM orders GROUP BY status",
    "SELECT * FROM events WHERE kind = 'login'",
    "SELECT p.name FROM products p WHERE p.id IN (SELECT product_id FROM orders)",
]


def job(policy: sqlsandbox.Policy, i: int):
    tenant = i % 13
    sql = QUERIES[i % len(QUERIES)]
    try:
        out = policy.rewrite(
            sql,
            groups=["customers"],
            attributes={"tenant": tenant, "region": f"r{tenant}"},
            params=bool(i % 2),
        )
        return ("ok", out.to_dict())
    except sqlsandbox.SqlsandboxError as e:
        return ("refused", e.code)


def run_concurrently(policy: sqlsandbox.Policy, n: int):
    barrier = threading.Barrier(8)

    def start(i: int):
        if i < 8:
            barrier.wait()
        return job(policy, i)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(start, range(n)))


def test_eight_threads_agree_with_one():
    for cache_bytes in [None, 1 << 20]:
        policy = sqlsandbox.Policy.from_file(POLICIES / "saas.yaml", cache_bytes=cache_bytes)
        sequential = [job(policy, i) for i in range(400)]
        concurrent = run_concurrently(policy, 400)
        assert concurrent == sequential
        # Every tenant saw its own value bound, never another's.
        for i, (status, out) in enumerate(concurrent):
            assert status == "ok", out
            tenant = i % 13
            values = [p["value"] for p in out["params"]]
            bound = values if values else [int(t) for t in __import__("re").findall(r"tenant_id = (\d+)", out["sql"])]
            assert bound and set(bound) <= {tenant, f"r{tenant}"}, (i, out)


def test_shared_principal_and_results_across_threads():
    policy = sqlsandbox.Policy.from_file(POLICIES / "saas.yaml")
    alice = policy.principal(user="alice")
    want = policy.rewrite(QUERIES[0], principal=alice).sql
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda _: policy.rewrite(QUERIES[0], principal=alice).sql, range(64)))
    assert got == [want] * 64


def test_the_gil_is_released_during_a_rewrite():
    """A Python thread that ticks (and sleeps between ticks) keeps ticking
    while another thread is inside one long rewrite. With a switch
    interval of minutes, a thread holding the GIL is never asked to drop
    it, so the ticker only runs when the GIL is released: it does not tick
    at all during a native call that holds the GIL (shown with `sorted`),
    and ticks throughout a rewrite."""
    policy = sqlsandbox.Policy.from_file(POLICIES / "saas.yaml")
    limits = dict(max_sql_bytes=1 << 26, max_operators=1 << 24)
    columns = 1000
    while True:
        sql = "SELECT " + ", ".join(f"o.total + {i} AS c{i}" for i in range(columns)) + " FROM orders o"
        start = time.perf_counter()
        policy.rewrite(sql, user="alice", **limits)
        took = time.perf_counter() - start
        if took >= 0.1 or columns >= 512_000:
            break
        columns *= 2
    numbers = [((i * 7919) % 1_000_003) / 7.0 for i in range(200_000)]
    while True:
        start = time.perf_counter()
        sorted(numbers)
        if time.perf_counter() - start >= 0.05 or len(numbers) > 20_000_000:
            break
        numbers = numbers * 2

    ticks = [0]
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.0002)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(300.0)
    t = threading.Thread(target=ticker)
    t.start()
    try:
        time.sleep(0.05)  # the ticker runs
        before = ticks[0]
        sorted(numbers)
        held = ticks[0] - before
        before = ticks[0]
        policy.rewrite(sql, user="alice", **limits)
        released = ticks[0] - before
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(interval)
    assert held == 0, held
    assert released >= 5, (released, took)
