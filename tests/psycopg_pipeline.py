"""psycopg 3 pipeline mode through the proxy: writes and reads interleaved in one pipeline.

Usage: psycopg_pipeline.py CONNINFO TABLE N

In pipeline mode (autocommit) psycopg sends each statement's messages without a Sync and
fetches a result with a Flush; the Sync comes when the pipeline ends. All of it is one
implicit transaction: each read must see the writes before it, and every write must commit.
Exits non-zero, saying why, when something differs.
"""

import sys

import psycopg


def main():
    conninfo, table, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with psycopg.connect(conninfo, autocommit=True) as conn:
        with conn.pipeline():
            for i in range(n):
                # INSERT ... RETURNING, fetched at once: Parse/Bind/Describe/Execute/Flush.
                cur = conn.execute(
                    f"INSERT INTO {table} (v) VALUES (%s) RETURNING id", (i,)
                )
                new_id = cur.fetchone()[0]
                seen = conn.execute(
                    f"SELECT count(*) FROM {table} WHERE id = %s", (new_id,)
                ).fetchone()[0]
                if seen != 1:
                    sys.exit(f"row {new_id} written in this pipeline is not visible")
                # A write whose result is not fetched before the next read.
                conn.execute(f"INSERT INTO {table} (v) VALUES (%s)", (n - 1 - i,))
                total = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                if total != 2 * (i + 1):
                    sys.exit(f"after {2 * (i + 1)} writes the pipeline reads {total} rows")
        total = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        print(f"pipeline done: {total} rows")


if __name__ == "__main__":
    main()
