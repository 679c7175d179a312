#!/usr/bin/env python3
"""Measures the attacks of issue 12, points 3 and 6, against a chat-server binary.

    attacks-issue12.py SERVER ADMIN SCENARIO [--seconds N] [-- EXTRA SERVER FLAGS]

SERVER and ADMIN are the chat-server and chat-admin binaries; each scenario starts a fresh
server in a temporary folder, with flood and per-address limits lifted (the attack uses
many connections from one loopback address), and prints its figures.

  dm      one account sends 4 KB private messages to an offline user for N s (default 60)
          from 4 connections; prints how many were stored for the recipient.
  replay  10,000 kept private messages of 4 KB are written into the database; the
          recipient logs in and reads them all; prints the server's VmRSS before and
          VmHWM after (peak), and how many arrived. A server with bounds needs
          `-- --kept-dms-per-recipient 10000` only to keep them (they are put in directly).
  rooms   two accounts /join new rooms as fast as they can for N s (default 120); prints
          how many rooms exist afterwards.
  stall   37,379 rooms are put into the database; alice sends bob a message every 20 ms
          while 5 connections send /rooms as fast as answers come, for N s (default 10);
          prints the longest time a message took to reach bob, and how the listers fared.
"""

import itertools
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time

GENEROUS = [
    "--flood-burst", "1000000", "--flood-rate", "1000000", "--flood-tolerated", "1000000",
    "--max-per-address", "1000000", "--new-per-address-burst", "1000000",
    "--new-per-address-rate", "1000000",
]
PASSWORD = "attack-password"


class Server:
    def __init__(self, server, admin, extra, users):
        self.dir = tempfile.mkdtemp(prefix="issue12-")
        self.db = os.path.join(self.dir, "chat.db")
        self.server, self.admin, self.extra = server, admin, extra
        lines = "".join(f"{u} {PASSWORD}\n" for u in users)
        path = os.path.join(self.dir, "users.txt")
        with open(path, "w") as f:
            f.write(lines)
        subprocess.run([admin, "--db", self.db, "--create", "import", path], check=True,
                       stdout=subprocess.DEVNULL)
        self.port = None

    def start(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [self.server, "--listen", f"127.0.0.1:{self.port}", "--db", self.db,
             "--certs-dir", os.path.join(self.dir, "certs"), "--log", "warn",
             "--durability", "process-crash"] + GENEROUS + self.extra,
            cwd=self.dir, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def memory(self):
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        return fields["VmRSS"], fields["VmHWM"]

    def connect(self, nick):
        context = ssl.create_default_context(cafile=os.path.join(self.dir, "certs", "ca.pem"))
        raw = socket.create_connection(("127.0.0.1", self.port))
        conn = Conn(context.wrap_socket(raw, server_hostname="localhost"))
        conn.expect("NICK")
        conn.send(nick)
        conn.expect("PASS")
        conn.send(PASSWORD)
        conn.expect("WELCOME")
        return conn


class Conn:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def send_many(self, lines):
        self.sock.sendall("".join(l + "\n" for l in lines).encode())

    def line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def expect(self, prefix):
        while True:
            line = self.line()
            if line is None or line.startswith(prefix):
                return line

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def flood(server, nick, stop, refused, batch):
    """Logs in as `nick` and, until `stop`, sends `batch()` lines followed by /help (whose
    answer marks the end of the batch), counting `ERR limit-reached` answers in refused[0]."""
    conn = server.connect(nick)
    conn.expect("INFO ")
    while time.time() < stop:
        conn.send_many(batch() + ["/help"])
        while True:
            line = conn.expect("")
            if line is None:
                return
            if line.startswith("ERR limit-reached"):
                refused[0] += 1
            if line.startswith("INFO Commands:"):
                break
    conn.close()


def dm(server, seconds):
    server.start()
    text = "x" * 4000
    stop = time.time() + seconds
    refused = [0]

    def attack():
        flood(server, "mallory", stop, refused, lambda: [f"/msg bob {text}"] * 10)

    threads = [threading.Thread(target=attack) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.stop()
    db = sqlite3.connect(server.db)
    count, size = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM messages "
        "WHERE pending = 1 AND recipient_nick = 'bob'").fetchone()
    print(f"dm: in {seconds} s one account stored {count} private messages "
          f"({size / 1e6:.1f} MB) for an offline user; {refused[0]} refused with limit-reached")


def replay(server, _seconds):
    server.start()
    server.stop()
    db = sqlite3.connect(server.db)
    (sender,) = db.execute("SELECT id FROM accounts WHERE nick = 'mallory'").fetchone()
    (bob,) = db.execute("SELECT id FROM accounts WHERE nick = 'bob'").fetchone()
    now = int(time.time() * 1000)
    db.executemany(
        "INSERT INTO messages (sent_at, sender_id, sender_nick, recipient_id, recipient_nick,"
        " body, pending) VALUES (?, ?, 'mallory', ?, 'bob', ?, 1)",
        [(now, sender, bob, f"{n} " + "x" * 4000) for n in range(10_000)])
    db.commit()
    db.close()
    server.start()
    rss_before, _ = server.memory()
    conn = server.connect("bob")
    started = time.time()
    count = 0
    while True:
        line = conn.line()
        if line is None or line.startswith("INFO "):
            break
        if line.startswith("DM "):
            count += 1
    took = time.time() - started
    rss_after, hwm = server.memory()
    conn.close()
    server.stop()
    print(f"replay: {count} kept private messages in {took:.1f} s; server VmRSS before "
          f"login {rss_before}, after {rss_after}, peak (VmHWM) {hwm}")


def rooms(server, seconds):
    server.start()
    stop = time.time() + seconds
    refused = [0]

    def create(nick):
        rooms = itertools.count()
        flood(server, nick, stop, refused,
              lambda: [f"/join #{nick}-{next(rooms)}" for _ in range(20)])

    threads = [threading.Thread(target=create, args=(n,)) for n in ("mallory", "trudy")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.stop()
    (count,) = sqlite3.connect(server.db).execute("SELECT COUNT(*) FROM rooms").fetchone()
    print(f"rooms: two accounts in {seconds} s; {count} rooms exist (#general included); "
          f"{refused[0]} joins refused with limit-reached")


def stall(server, seconds):
    server.start()
    server.stop()
    db = sqlite3.connect(server.db)
    # Members are trudy, who stays away: the listers' own logins stay small.
    (trudy,) = db.execute("SELECT id FROM accounts WHERE nick = 'trudy'").fetchone()
    db.executemany("INSERT INTO rooms (name, created_at) VALUES (?, 0)",
                   [(f"#spam-{n}",) for n in range(37_379)])
    db.execute("INSERT INTO memberships (account_id, room_id, joined_at) "
               "SELECT ?, id, 0 FROM rooms WHERE name LIKE '#spam-%'", (trudy,))
    db.commit()
    db.close()
    server.start()
    alice, bob = server.connect("alice"), server.connect("bob")
    alice.expect("INFO ")
    bob.expect("INFO ")
    stop = time.time() + seconds
    listed = {"answers": 0, "room_lines": 0, "too_slow": 0}

    def lister():
        conn = server.connect("mallory")
        conn.expect("INFO ")
        while time.time() < stop:
            conn.send("/rooms")
            while True:
                line = conn.line()
                if line is None or line.startswith("BYE"):
                    listed["too_slow"] += 1
                    conn.close()
                    conn = server.connect("mallory")
                    conn.expect("INFO ")
                    break
                if line.startswith("ROOM "):
                    listed["room_lines"] += 1
                if line == "END rooms":
                    listed["answers"] += 1
                    break
        conn.close()

    sent = {}
    worst = [0.0]

    def receive():
        while True:
            line = bob.line()
            if line is None:
                return
            if line.startswith("MSG #general") and " alice t" in line:
                n = int(line.rsplit(" t", 1)[1])
                worst[0] = max(worst[0], time.time() - sent[n])
                if n == -1:
                    return

    listers = [threading.Thread(target=lister) for _ in range(5)]
    receiver = threading.Thread(target=receive)
    receiver.start()
    for t in listers:
        t.start()
    n = 0
    while time.time() < stop:
        sent[n] = time.time()
        alice.send(f"t{n}")
        n += 1
        time.sleep(0.02)
    for t in listers:
        t.join()
    sent[-1] = time.time()
    alice.send("t-1")
    receiver.join()
    server.stop()
    answers = max(listed["answers"], 1)
    print(f"stall: {n} messages over {seconds} s while 5 connections sent /rooms; longest "
          f"delivery {worst[0] * 1000:.0f} ms; {listed['answers']} /rooms answers of "
          f"{listed['room_lines'] / answers:.0f} rooms each, {listed['too_slow']} lister "
          f"connections dropped (BYE too-slow or closed)")


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        extra = args[args.index("--") + 1:]
        args = args[:args.index("--")]
    seconds = None
    if "--seconds" in args:
        i = args.index("--seconds")
        seconds = float(args[i + 1])
        del args[i:i + 2]
    server_bin, admin_bin, scenario = args
    defaults = {"dm": 60, "replay": 0, "rooms": 120, "stall": 10}
    run = {"dm": dm, "replay": replay, "rooms": rooms, "stall": stall}[scenario]
    users = ["mallory", "trudy", "alice", "bob"]
    server = Server(server_bin, admin_bin, extra, users)
    run(server, seconds if seconds is not None else defaults[scenario])


if __name__ == "__main__":
    main()
