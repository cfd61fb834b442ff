#!/usr/bin/env python3
"""Idle-client scenario of scripts/bench.sh.

Holds N authenticated, idle client connections open through a proxy (startup packet with
trust authentication, read up to ReadyForQuery, then nothing), reports how much resident
memory the proxy's processes grew per held client, and while they are held times fresh
clients doing connect + authenticate + `SELECT 1` + terminate. Raw sockets on purpose: no
client library to install, and nothing but the protocol's own cost is measured.

Prints `key value` lines for bench.sh: held, kib_per_client, fresh_p50_ms, fresh_p99_ms.
"""
import argparse
import asyncio
import os
import resource
import struct
import sys
import time


def startup_packet(user, db):
    body = struct.pack("!I", 196608)  # protocol 3.0
    for k, v in (("user", user), ("database", db), ("application_name", "bench_idle")):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def query_message(sql):
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!I", len(body) + 4) + body


TERMINATE = b"X" + struct.pack("!I", 4)


async def read_until_ready(reader):
    """Reads messages until ReadyForQuery; raises on ErrorResponse or EOF."""
    while True:
        header = await reader.readexactly(5)
        tag, length = header[:1], struct.unpack("!I", header[1:])[0]
        body = await reader.readexactly(length - 4)
        if tag == b"E":
            raise RuntimeError("server error: " + body.decode(errors="replace"))
        if tag == b"R" and struct.unpack("!I", body[:4])[0] != 0:
            raise RuntimeError("server asked for a password: use a trust setup")
        if tag == b"Z":
            return


async def open_client(host, port, user, db, timeout):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    writer.write(startup_packet(user, db))
    await asyncio.wait_for(read_until_ready(reader), timeout)
    return reader, writer


async def fresh_client(host, port, user, db, timeout):
    start = time.perf_counter()
    reader, writer = await open_client(host, port, user, db, timeout)
    writer.write(query_message("SELECT 1"))
    await asyncio.wait_for(read_until_ready(reader), timeout)
    elapsed = time.perf_counter() - start
    writer.write(TERMINATE)
    writer.close()
    return elapsed


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raise_open_files(clients):
    """Every held client is a socket: lift the soft open-files limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = clients + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < want:
        print(f"idle.py: open-files limit {soft} is below {want}; fewer clients will be held",
              file=sys.stderr)


async def main(args):
    raise_open_files(args.clients)
    pids = [p for p in args.pids.split(",") if p]
    # Warm the proxy (first connection may open backends / fill caches) before the baseline.
    for _ in range(3):
        await fresh_client(args.host, args.port, args.user, args.db, args.timeout)
    await asyncio.sleep(0.5)
    before = rss_kib(pids)
    held, failed = [], 0
    gate = asyncio.Semaphore(args.parallel)

    async def one():
        nonlocal failed
        async with gate:
            if failed:  # the proxy refuses more clients: stop rather than wait on each
                return
            try:
                held.append(await open_client(args.host, args.port, args.user, args.db,
                                              args.timeout))
            except (OSError, RuntimeError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                failed += 1

    await asyncio.gather(*(one() for _ in range(args.clients)))
    await asyncio.sleep(1.0)
    after = rss_kib(pids)
    times = []
    for _ in range(args.fresh):
        times.append(await fresh_client(args.host, args.port, args.user, args.db, args.timeout))
    for _, writer in held:
        writer.write(TERMINATE)
        writer.close()
    print(f"held {len(held)}")
    print(f"failed {failed}")
    if held and pids:
        print(f"kib_per_client {(after - before) / len(held):.1f}")
    print(f"fresh_p50_ms {percentile(times, 0.50) * 1000:.2f}")
    print(f"fresh_p99_ms {percentile(times, 0.99) * 1000:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--db", default="postgres")
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--parallel", type=int, default=200, help="connects in flight")
    parser.add_argument("--fresh", type=int, default=50, help="fresh clients timed")
    parser.add_argument("--pids", default="", help="comma-separated proxy pids for RSS")
    parser.add_argument("--timeout", type=float, default=10.0)
    try:
        asyncio.run(main(parser.parse_args()))
    except (OSError, RuntimeError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
        print(f"idle.py: {e}", file=sys.stderr)
        sys.exit(1)
