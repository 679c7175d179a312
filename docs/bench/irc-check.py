#!/usr/bin/env python3
"""Smoke test for the benchmark IRC servers started by irc-servers.sh.

Checks, over TLS with certificate verification against CA:
  1. two clients register (NICK/USER), which numeric ends registration, what JOIN returns;
  2. a channel PRIVMSG reaches the other member, and whether the sender gets an echo;
  3. a burst of --flood PRIVMSGs sent in one write all arrive, the sender is not
     disconnected/throttled (it still answers PING afterwards);
  4. --clients simultaneous connections from 127.0.0.1 all register;
  5. optionally (--idle N) stays idle N seconds and reports server PINGs.

Only the Python standard library is used. Example:
  python3 irc-check.py --port 6697 --ca CERTS/ca.pem --clients 2000 --flood 200
"""
import argparse
import asyncio
import ssl
import sys
import time

REG_END = {"376", "422"}


def parse(line):
    """Return (prefix, command, params) of one IRC line."""
    prefix = ""
    if line.startswith(":"):
        prefix, _, line = line[1:].partition(" ")
    if " :" in line:
        head, _, trailing = line.partition(" :")
        params = head.split() + [trailing]
    else:
        params = line.split()
    cmd = params.pop(0) if params else ""
    return prefix, cmd, params


class Client:
    def __init__(self, nick):
        self.nick = nick
        self.reader = None
        self.writer = None
        self.lines = asyncio.Queue()
        self.closed = False
        self.pings = []  # times at which the server sent PING
        self.task = None

    async def connect(self, host, port, ctx, server_hostname):
        self.reader, self.writer = await asyncio.open_connection(
            host, port, ssl=ctx, server_hostname=server_hostname)
        self.task = asyncio.create_task(self._read_loop())

    async def _read_loop(self):
        try:
            while True:
                raw = await self.reader.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                _, cmd, params = parse(line)
                if cmd == "PING":
                    self.pings.append(time.monotonic())
                    self.send("PONG :" + (params[-1] if params else ""))
                await self.lines.put(line)
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            self.closed = True
            await self.lines.put(None)

    def send(self, *lines):
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write("".join(l + "\r\n" for l in lines).encode())

    async def expect(self, pred, timeout):
        """Collect lines until pred(cmd, params, line) is true. Returns (match, seen)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, seen
            try:
                line = await asyncio.wait_for(self.lines.get(), left)
            except asyncio.TimeoutError:
                return None, seen
            if line is None:
                seen.append("<connection closed>")
                return None, seen
            seen.append(line)
            _, cmd, params = parse(line)
            if pred(cmd, params, line):
                return line, seen

    async def drain(self, quiet=0.3):
        """Return lines that arrive until the connection is quiet for `quiet` seconds."""
        seen = []
        while True:
            try:
                line = await asyncio.wait_for(self.lines.get(), quiet)
            except asyncio.TimeoutError:
                return seen
            if line is None:
                seen.append("<connection closed>")
                return seen
            seen.append(line)

    async def register(self, timeout=30):
        self.send("NICK " + self.nick, "USER %s 0 * :%s" % (self.nick, self.nick))
        return await self.expect(lambda c, p, l: c in REG_END or c in ("ERROR", "433", "432"), timeout)

    async def alive(self, token, timeout=10):
        """Send PING and wait for the matching PONG; True if the link still works."""
        self.send("PING :" + token)
        m, _ = await self.expect(lambda c, p, l: c == "PONG" and p and p[-1] == token, timeout)
        return m is not None

    async def close(self):
        if self.writer is not None:
            self.send("QUIT :done")
            try:
                self.writer.close()
                await asyncio.wait_for(self.writer.wait_closed(), 2)
            except Exception:
                pass
        if self.task:
            self.task.cancel()


def numerics(lines):
    out = []
    for l in lines:
        _, cmd, _ = parse(l)
        out.append(cmd)
    return " ".join(out)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True, help="ca.pem that signed the server certificate")
    ap.add_argument("--sni", default="localhost", help="name checked against the certificate")
    ap.add_argument("--channel", default="#bench")
    ap.add_argument("--flood", type=int, default=200, help="PRIVMSGs sent back-to-back")
    ap.add_argument("--flood-wait", type=float, default=5, help="seconds to wait for a burst")
    ap.add_argument("--clients", type=int, default=2000, help="simultaneous connections")
    ap.add_argument("--parallel", type=int, default=200, help="handshakes in flight at once")
    ap.add_argument("--idle", type=float, default=0, help="stay idle N s and report PINGs")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    ctx = ssl.create_default_context(cafile=a.ca)
    ok = True

    # 1. registration
    A, B = Client("chkA"), Client("chkB")
    for c in (A, B):
        await c.connect(a.host, a.port, ctx, a.sni)
    t0 = time.monotonic()
    endA, seenA = await A.register()
    reg_ms = (time.monotonic() - t0) * 1000
    endB, _ = await B.register()
    if not endA or not endB:
        print("FAIL registration:", seenA[-5:])
        return 1
    after = await A.drain()
    print("registration: ended by %s in %.0f ms; numerics: %s"
          % (parse(endA)[1], reg_ms, numerics(seenA)))
    if after:
        print("  sent right after the end of registration:", after)
    await B.drain()

    # 2. join
    A.send("JOIN " + a.channel)
    m, seen = await A.expect(lambda c, p, l: c == "366", 10)
    print("JOIN reply to the joiner:", " | ".join(seen))
    B.send("JOIN " + a.channel)
    await B.expect(lambda c, p, l: c == "366", 10)
    seen_a = await A.drain()
    print("existing member sees:", " | ".join(seen_a))

    # 3. one message + echo check
    t0 = time.monotonic()
    A.send("PRIVMSG %s :hello from A" % a.channel)
    m, _ = await B.expect(lambda c, p, l: c == "PRIVMSG" and p[-1] == "hello from A", 10)
    if m:
        print("PRIVMSG delivered to the other member in %.2f ms: %s"
              % ((time.monotonic() - t0) * 1000, m))
    else:
        print("FAIL: PRIVMSG not delivered")
        ok = False
    echo = await A.drain(0.5)
    echoed = any(parse(l)[1] == "PRIVMSG" for l in echo)
    print("sender gets its own PRIVMSG echoed back:", "YES" if echoed else "no", echo if echo else "")

    # 4. flood: --flood PRIVMSGs back-to-back, (a) one write (one TLS record) per message,
    #    like a client that flushes every line, (b) all in a single write, so several
    #    messages share one TLS record (some servers only notice them when more bytes arrive).
    for mode in ("one write per message", "single write"):
        n = a.flood
        tag = "f%d" % len(mode)
        payload = ["PRIVMSG %s :%s %d %s" % (a.channel, tag, i, "x" * 40) for i in range(n)]
        t0 = time.monotonic()
        if mode == "single write":
            A.send(*payload)
        else:
            for line in payload:
                A.send(line)
                await A.writer.drain()
        got, last = 0, None
        deadline = t0 + a.flood_wait
        while got < n:
            m, _ = await B.expect(lambda c, p, l: c == "PRIVMSG" and p[-1].startswith(tag + " "),
                                  deadline - time.monotonic())
            if not m:
                break
            got += 1
            last = time.monotonic()
        stalled = got
        # More bytes from the sender: a PING. If the rest only arrives now, the server had
        # left it buffered (TLS layer) instead of throttling or dropping it.
        alive = await A.alive("after-flood-%s" % tag)
        while got < n:
            m, _ = await B.expect(lambda c, p, l: c == "PRIVMSG" and p[-1].startswith(tag + " "), 5)
            if not m:
                break
            got += 1
        extra = await A.drain(0.3)
        bad = [l for l in extra if "Excess" in l or l.startswith("ERROR") or "closed" in l]
        if stalled == n and alive and not A.closed:
            print("flood (%s): %d/%d PRIVMSGs arrived, last after %.1f ms; sender still connected"
                  % (mode, n, n, (last - t0) * 1000))
        elif got == n and alive and not A.closed:
            print("WARN flood (%s): only %d/%d arrived within %.0f s; the rest came only after the "
                  "sender sent more bytes (PING); sender not disconnected"
                  % (mode, stalled, n, a.flood_wait))
        else:
            print("FAIL flood (%s): %d/%d arrived, sender alive=%s closed=%s %s"
                  % (mode, got, n, alive, A.closed, bad))
            ok = False

    # 5. many connections
    if a.clients > 0:
        sem = asyncio.Semaphore(a.parallel)
        conns = []
        errors = {}

        async def one(i):
            c = Client("m%05d" % i)
            async with sem:
                try:
                    await asyncio.wait_for(c.connect(a.host, a.port, ctx, a.sni), 60)
                    end, seen = await c.register(60)
                    if not end:
                        errors[str(seen[-1:])] = errors.get(str(seen[-1:]), 0) + 1
                        await c.close()
                        return
                    conns.append(c)
                except Exception as e:  # noqa: BLE001
                    key = type(e).__name__ + ": " + str(e)[:80]
                    errors[key] = errors.get(key, 0) + 1
                    await c.close()

        t0 = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(a.clients)))
        dt = time.monotonic() - t0
        A.send("LUSERS")
        m, _ = await A.expect(lambda c, p, l: c == "265", 10)
        print("connections: %d/%d registered from %s in %.1f s; errors: %s; server says: %s"
              % (len(conns), a.clients, a.host, dt, errors or "none", m))
        still = await A.alive("after-mass")
        dropped = sum(1 for c in conns if c.closed)
        print("  after all connected: first client alive=%s, mass clients dropped=%d" % (still, dropped))
        if len(conns) != a.clients or not still or dropped:
            ok = False
        await asyncio.gather(*(c.close() for c in conns))

    # 6. idle / ping
    if a.idle > 0:
        A.pings.clear()
        t0 = time.monotonic()
        await asyncio.sleep(a.idle)
        print("idle %.0f s: server PINGs at %s s; still alive=%s"
              % (a.idle, [round(p - t0, 1) for p in A.pings], await A.alive("after-idle")))

    await A.close()
    await B.close()
    print("RESULT:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
