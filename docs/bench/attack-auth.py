#!/usr/bin/env python3
"""Measures the password-guessing attacks of issue 12 (points 1 and 2) against a real
chat-server over real TLS, standard library only.

Each scenario starts its own server (in a temporary folder, on 127.0.0.1, with the
documented login limits and only the connection limits lifted, so that hundreds of
connections can come from one address) and prints what the attacker got.

    python3 docs/bench/attack-auth.py --bin target/debug [--only parallel,other,passwd,flood]

--bin is the folder holding chat-server and chat-admin (build them first).
"""

import argparse
import asyncio
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

WRONG = "not-the-password"


class Server:
    """A chat-server in a temporary folder; its log is kept in memory."""

    def __init__(self, bin_dir, users, extra=()):
        self.dir = tempfile.TemporaryDirectory(prefix="attack-auth-")
        self.db = os.path.join(self.dir.name, "chat.db")
        self.admin = os.path.join(bin_dir, "chat-admin")
        accounts = os.path.join(self.dir.name, "accounts.txt")
        with open(accounts, "w") as f:
            for nick, password in users.items():
                f.write(f"{nick} {password}\n")
        subprocess.run([self.admin, "--db", self.db, "--create", "import", accounts],
                       check=True, capture_output=True)
        self.log = []
        self.proc = subprocess.Popen(
            [os.path.join(bin_dir, "chat-server"), "--listen", "127.0.0.1:0",
             "--db", self.db, "--certs-dir", os.path.join(self.dir.name, "certs"),
             "--max-per-address", "100000", "--new-per-address-burst", "100000",
             "--new-per-address-rate", "100000", "--log", "info", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        found = threading.Event()
        self.port = None

        def read():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
                if m and not found.is_set():
                    self.port = int(m.group(1))
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(30):
            self.stop()
            sys.exit("the server did not start:\n" + "".join(self.log))
        self.tls = ssl.create_default_context(
            cafile=os.path.join(self.dir.name, "certs", "ca.pem"))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()


class Client:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, server, source):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=server.tls, server_hostname="localhost",
            local_addr=(source, 0), limit=1 << 20)
        return cls(reader, writer)

    async def line(self, timeout=60):
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        if not raw:
            return None
        return raw.decode().rstrip("\r\n")

    async def until(self, prefix, timeout=60):
        while True:
            line = await self.line(timeout)
            if line is None or line.startswith(prefix):
                return line

    def send(self, text):
        self.writer.write((text + "\r\n").encode())

    async def prompted(self, nick):
        """Answers NICK; returns at the PASS prompt."""
        await self.until("NICK")
        self.send(nick)
        await self.until("PASS")

    async def answer(self):
        """The answer to a password: the first ERR, WELCOME or BYE line, or None."""
        while True:
            line = await self.line()
            if line is None or line.startswith(("ERR ", "WELCOME ", "BYE ")):
                return line

    async def login(self, nick, password, retry_busy=False):
        while True:
            await self.prompted(nick)
            self.send(password)
            answer = await self.answer()
            if answer and answer.startswith("WELCOME"):
                await self.until("INFO ")
            if not (retry_busy and kind(answer) == "server-busy"):
                return answer

    def close(self):
        self.writer.close()


def tally(counts):
    """`kind: n, ...` in a stable order; `counts` maps a kind to a number or a list."""
    return ", ".join(f"{k}: {v if isinstance(v, int) else len(v)}"
                     for k, v in sorted(counts.items()))


def kind(answer):
    if answer is None:
        return "closed"
    return answer.split(" ")[1] if answer.startswith("ERR ") else answer.split(" ")[0]


async def parallel(bin_dir):
    """30 connections from one address guess one account's password at the same moment."""
    server = Server(bin_dir, {"alice": "alices-password"})
    try:
        clients = [await Client.connect(server, "127.0.0.2") for _ in range(30)]
        for c in clients:
            await c.prompted("alice")
        start = time.monotonic()
        for c in clients:
            c.send(WRONG)
        results = {}

        async def one(c):
            answer = await c.answer()
            results.setdefault(kind(answer), []).append(time.monotonic() - start)

        await asyncio.gather(*(one(c) for c in clients))
        checked = results.get("auth-failed", [])
        print(f"parallel: 30 guesses at alice from one address at once: "
              f"{len(checked)} checked, the last answered after {max(checked, default=0):.2f} s; "
              + tally(results))
    finally:
        server.stop()


async def other(bin_dir, seconds=25.0, guessers=30):
    """`guessers` connections from one address keep guessing alice's password while the
    attacker logs into their own account (mallory) from the same address every half
    second, for `seconds`."""
    server = Server(bin_dir, {"alice": "alices-password", "mallory": "mallorys-password"})
    counts = {}

    def count(k):
        counts[k] = counts.get(k, 0) + 1

    async def guess():
        while True:
            c = await Client.connect(server, "127.0.0.3")
            while True:
                await c.prompted("alice")
                c.send(WRONG)
                answer = await c.answer()
                count(kind(answer))
                if answer is None or answer.startswith("BYE") or kind(answer) == "auth-failed" \
                        and counts.get("auth-failed", 0) % 3 == 0:
                    break
            c.close()

    async def own():
        while True:
            c = await Client.connect(server, "127.0.0.3")
            count("own-" + kind(await c.login("mallory", "mallorys-password")))
            c.close()
            await asyncio.sleep(0.5)

    try:
        tasks = [asyncio.ensure_future(guess()) for _ in range(guessers)]
        tasks.append(asyncio.ensure_future(own()))
        await asyncio.wait(tasks, timeout=seconds)
        for task in tasks:
            task.cancel()
        print(f"other: {guessers} connections guessing alice while mallory logs in from the "
              f"same address, {seconds:.0f} s: {counts.get('auth-failed', 0)} guesses checked; "
              + tally(counts))
    finally:
        server.stop()


async def passwd(bin_dir, seconds=10.0):
    """A stolen session guesses the old password with /passwd, one after another."""
    server = Server(bin_dir, {"alice": "alices-password"},
                    ["--flood-burst", "100000", "--flood-rate", "100000"])
    try:
        c = await Client.connect(server, "127.0.0.4")
        assert (await c.login("alice", "alices-password")).startswith("WELCOME")
        counts = {}
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            c.send(f"/passwd guess{n} new-password-{n}")
            n += 1
            k = kind(await c.until("ERR "))
            counts[k] = counts.get(k, 0) + 1
        checked = counts.get("auth-failed", 0)
        print(f"passwd: /passwd guesses from one session in {seconds:.0f} s: {checked} checked "
              f"({checked / seconds:.1f}/s); "
              + tally(counts))
    finally:
        server.stop()


async def flood(bin_dir, connections=256, seconds=30.0):
    """`connections` sessions of one account send /passwd with wrong old passwords (within
    flood control: 4 a second each) while carol logs in from elsewhere, again and again."""
    server = Server(bin_dir, {"bob": "bobs-password", "carol": "carols-password"})
    try:
        sessions = []
        for _ in range(connections):
            c = await Client.connect(server, "127.0.0.5")
            sessions.append(c)
        logins = await asyncio.gather(
            *(c.login("bob", "bobs-password", retry_busy=True) for c in sessions))
        assert all(a and a.startswith("WELCOME") for a in logins), logins
        log_before = len(server.log)
        stop = time.monotonic() + seconds
        answers = {}

        async def guess(c):
            n = 0
            while time.monotonic() < stop:
                c.send(f"/passwd guess{n} new-password-{n}")
                n += 1
                try:
                    k = kind(await c.until("ERR ", timeout=max(stop - time.monotonic(), 0.01)))
                except asyncio.TimeoutError:
                    # Still waiting for its turn when the time is up.
                    k = "unanswered"
                answers[k] = answers.get(k, 0) + 1
                if k == "unanswered":
                    return
                await asyncio.sleep(0.25)

        latencies, honest = [], {}

        async def honest_logins():
            while time.monotonic() < stop:
                c = await Client.connect(server, "127.0.0.6")
                await c.prompted("carol")
                sent = time.monotonic()
                c.send("carols-password")
                answer = await c.answer()
                latencies.append(time.monotonic() - sent)
                honest[kind(answer)] = honest.get(kind(answer), 0) + 1
                c.close()
                await asyncio.sleep(0.2)

        await asyncio.gather(honest_logins(), *(guess(c) for c in sessions))
        log = server.log[log_before:]
        errors = sum(" ERROR " in line for line in log)
        warnings = sum(" WARN " in line for line in log)
        lat = sorted(latencies)
        p95 = lat[int(0.95 * (len(lat) - 1))]
        print(f"flood: {connections} sessions of bob sending /passwd for {seconds:.0f} s: "
              + tally(answers)
              + f"; carol's logins: {len(lat)} "
              + f"({tally(honest)}), "
              f"median {statistics.median(lat):.3f} s, p95 {p95:.3f} s, max {lat[-1]:.3f} s; "
              f"log: {len(log)} lines, {errors} ERROR, {warnings} WARN")
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", required=True, help="folder with chat-server and chat-admin")
    parser.add_argument("--only", default="parallel,other,passwd,flood")
    args = parser.parse_args()
    scenarios = {"parallel": parallel, "other": other, "passwd": passwd, "flood": flood}
    for name in args.only.split(","):
        asyncio.run(scenarios[name](args.bin))


if __name__ == "__main__":
    main()
