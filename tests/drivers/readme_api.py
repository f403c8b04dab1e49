# SPDX-License-Identifier: Apache-2.0
"""The README's SQL API through psycopg 3, in each way its users call it: plain, named
arguments, prepared statements, binary parameters, pipeline mode, and a registered
jobs.bulk_job composite. Exits non-zero at the first call that does not do what the README says.
usage: PGJOBS_TEST_DSN=postgresql://... python3 tests/drivers/readme_api.py"""
import datetime
import os
import sys

import psycopg
from psycopg.types.composite import CompositeInfo, register_composite
from psycopg.types.json import Jsonb


def run(conn, mode, refusal=True, **kw):
    def one(sql, params=()):
        return conn.execute(sql, params, **kw).fetchall()

    def publish(task, **args):
        names = ", ".join(f"i_{k} => %({k})s" for k in args)
        sql = f"SELECT job_id FROM jobs.publish(i_task => %(task)s{', ' if names else ''}{names})"
        return conn.execute(sql, {"task": task, **args}, **kw).fetchone()[0]

    task = f"{mode}.email"
    a = publish(task, arguments=Jsonb({"to": "a@example.com"}), timeout=30, priority=10,
                max_retries=5)
    b = publish(task)
    c = publish(task)
    taken = one("SELECT job_id, attempts FROM jobs.consume(%s, %s)", (10, [task]))
    assert [r[0] for r in taken][0] == a, (mode, taken)
    attempt = {job: n for job, n in taken}
    one("SELECT jobs.ack(%s)", (a,))
    one("SELECT jobs.ack(%s, %s)", (b, attempt[b]))
    one("SELECT jobs.nack(%s, %s, %s, %s)", (c, "boom", None, attempt[c]))
    d = publish(task)
    e = publish(task)
    one("SELECT * FROM jobs.consume(%s, %s)", (2, [task]))
    one("SELECT jobs.nack(%s, %s, %s)",
        (d, "busy", datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)))
    assert len(one("SELECT job_id FROM jobs.ack(%s, %s)", ([e], [1]))) == 1, mode
    if refusal:  # in a pipeline, an error aborts the commands after it until the sync
        try:
            one("SELECT jobs.ack(%s, %s)", (e, 1))
            raise AssertionError(f"{mode}: acking a finished job must be refused")
        except psycopg.errors.ObjectNotInPrerequisiteState:
            pass
    one("SELECT jobs.expire()")


def main():
    dsn = os.environ["PGJOBS_TEST_DSN"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        run(conn, "plain")
        run(conn, "prepared", prepare=True)
        run(conn, "binary", binary=True)
        with conn.pipeline():
            run(conn, "pipeline", refusal=False)
        info = CompositeInfo.fetch(conn, "jobs.bulk_job")
        register_composite(info, conn)
        bulk = info.python_type
        rows = conn.execute(
            "SELECT job_id FROM jobs.publish_bulk(%s)",
            ([bulk("bulk", Jsonb({"n": 1}), None, None, None, None),
              bulk("bulk", Jsonb({"n": 2}), None, 120, 5, 0)],)).fetchall()
        assert len(rows) == 2, rows
    print("psycopg: every documented call form works in every mode")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the test reads stderr
        print(f"psycopg: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
