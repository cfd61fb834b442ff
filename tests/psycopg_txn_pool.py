"""psycopg 3 clients sharing a few backend connections (pool_mode = transaction).

Usage: psycopg_txn_pool.py CONNINFO CLIENTS ROUNDS

Each client runs three statements over and over: psycopg prepares a statement (a named
protocol-level statement) from its sixth run; halfway, prepared_max drops to 1, so it
closes them again as it goes (Close messages). Some rounds run inside a transaction. Exits non-zero, saying why,
when an answer is wrong; prints how many backends the clients' statements ran on.
"""

import sys
import threading

import psycopg


def client(conninfo, k, rounds, pids, errors):
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for i in range(rounds):
                if i == rounds // 2:
                    conn.prepared_max = 1
                for q in range(3):
                    v, pid = conn.execute(
                        f"SELECT %s::int + {q}, pg_backend_pid()", (i * 10 + k,)
                    ).fetchone()
                    if v != i * 10 + k + q:
                        errors.append(f"client {k}: {v} != {i * 10 + k + q}")
                    pids.add(pid)
                if i % 3 == 0:
                    with conn.transaction():
                        a = conn.execute("SELECT pg_backend_pid()", prepare=True).fetchone()
                        b = conn.execute("SELECT pg_backend_pid()", prepare=True).fetchone()
                        if a != b:
                            errors.append(f"client {k}: a transaction moved {a} -> {b}")
    except Exception as e:  # reported with the others
        errors.append(f"client {k}: {e!r}")


def main():
    conninfo, clients, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pids, errors = set(), []
    threads = [
        threading.Thread(target=client, args=(conninfo, k, rounds, pids, errors))
        for k in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("\n".join(errors[:20]))
    print(f"backends: {len(pids)}")


if __name__ == "__main__":
    main()
