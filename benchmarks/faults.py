"""Load and faults: `digitrec serve` under hostile traffic, a killed worker, and a graceful stop.

Three phases, each on a fresh server (127.0.0.1, a free port, the default 2 sync workers), with
16 client threads that open a connection per request (as the sync worker wants):

1. hostile: `--seconds` (30) of load where 10% of requests are hostile — decompression bombs,
   1,600-dot grids sent to /api/read-number, bodies sent slowly over ~2 s (the page's request,
   and a 300 KB photo of noise), bytes that are no image. The good ones (the page's
   /api/predict request) must all get 200 with p99 ≤ 100 ms;
   no request of either kind may get a 5xx.
2. kill: good load; one worker is SIGKILLed every few seconds (`--kills`, 3). A request that
   fails on its connection (reset, or closed without an answer) is sent again once, as the API
   docs tell clients to. Counts: requests hit, lost (failed again), the time until a
   replacement worker is up and until throughput is back to 90% of the level before the kill.
3. term: good load; SIGTERM to gunicorn's master. Counts what the clients saw after it:
   answered (200), failed before sending (connect refused or timed out: safe to send
   elsewhere), and failed after sending (reset or closed without an answer: the lost ones).
   The same with gunicorn's plain sync worker (`gunicorn -k sync`) as the baseline.

    .venv/bin/python benchmarks/faults.py [--seconds 30] [--clients 16] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "scripts"))
from _canvas import canvas_png  # noqa: E402
from make_corpus import dot_grid, png_with_size  # noqa: E402

HOSTILE_SHARE = 0.10
SLOW_BODY_SECONDS = 2.0


@dataclass
class Outcome:
    """One request as its client saw it."""

    kind: str  # "good" or the hostile kind
    start: float
    end: float
    status: int | None  # None: no HTTP answer
    failure: str = ""  # "before-send" (connect failed), "after-send" (reset / no answer)
    retried: bool = False


def noise_png(side: int = 320) -> bytes:
    """A photo-sized PNG (about 300 KB) of colour noise: no digit in it, much to upload."""
    import io

    import numpy as np
    from PIL import Image
    out = io.BytesIO()
    pixels = np.random.default_rng(14).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request_bytes(port: int, path: str, body: bytes, content_type: str) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}"
            f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def send(port: int, raw: bytes, slow: bool = False, timeout: float = 30) -> tuple[int | None, str]:
    """Send one request on a new connection; (status, failure) where failure is "" (answered),
    "before-send" or "after-send"."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return None, "before-send"
    with sock:
        try:
            if slow:  # the headers, then the body in 8 pieces over SLOW_BODY_SECONDS
                split = raw.index(b"\r\n\r\n") + 4
                sock.sendall(raw[:split])
                step = max(1, (len(raw) - split) // 8 + 1)
                for k in range(split, len(raw), step):
                    time.sleep(SLOW_BODY_SECONDS / 8)
                    sock.sendall(raw[k:k + step])
            else:
                sock.sendall(raw)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            return None, "after-send"
    answer = b"".join(chunks)
    if not answer.startswith(b"HTTP/1."):
        return None, "after-send"
    return int(answer.split(b" ", 2)[1]), ""


class Load:
    """`clients` threads sending requests until stopped; each request is good, or hostile with
    probability `hostile`; `retry` sends a request that failed on its connection once more."""

    def __init__(self, port: int, clients: int, hostile: float = 0.0, retry: bool = False):
        self.port, self.clients, self.hostile, self.retry = port, clients, hostile, retry
        png = canvas_png()
        page = json.dumps({"image": "data:image/png;base64," + base64.b64encode(png).decode()})
        self.good = request_bytes(port, "/api/predict", page.encode(), "application/json")
        self.bad = {
            "bomb": request_bytes(port, "/api/predict", png_with_size(100_000, 100_000),
                                  "image/png"),
            "dot-grid": request_bytes(port, "/api/read-number", dot_grid(40), "image/png"),
            "slow-body": self.good,
            "slow-photo": request_bytes(port, "/api/predict", noise_png(), "image/png"),
            "not-an-image": request_bytes(port, "/api/predict", os.urandom(3000),
                                          "application/octet-stream"),
        }
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.running = threading.Event()
        self.threads: list[threading.Thread] = []

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        mine = []
        while self.running.is_set():
            kind = rng.choice(sorted(self.bad)) if rng.random() < self.hostile else "good"
            raw = self.good if kind == "good" else self.bad[kind]
            start = time.perf_counter()
            slow = kind.startswith("slow")
            status, failure = send(self.port, raw, slow=slow)
            if failure == "before-send" and not self.retry:
                time.sleep(0.05)  # the server is gone: don't spin
            retried = bool(failure and self.retry)
            if retried:
                status, failure = send(self.port, raw, slow=slow)
            mine.append(Outcome(kind, start, time.perf_counter(), status, failure, retried))
        with self.lock:
            self.outcomes.extend(mine)

    def start(self) -> None:
        self.running.set()
        self.threads = [threading.Thread(target=self._client, args=(k,), daemon=True)
                        for k in range(self.clients)]
        for thread in self.threads:
            thread.start()

    def stop(self) -> list[Outcome]:
        self.running.clear()
        for thread in self.threads:
            thread.join(timeout=60)
        return sorted(self.outcomes, key=lambda o: o.start)


def start_server(command: list[str], port: int, log: Path) -> subprocess.Popen:
    """Start a server and wait until /healthz and one prediction answer."""
    server = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                              cwd=REPO, start_new_session=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.2)
    warm = Load(port, 1)
    for _ in range(20):  # every worker loads its models before the clock starts
        send(port, warm.good)
    return server


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def worker_pids(master: int) -> list[int]:
    """gunicorn's workers: the master's child processes."""
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else float("nan")


def digitrec_command(port: int) -> list[str]:
    return [sys.executable, "-m", "digitrec", "serve", "--host", "127.0.0.1", "--port",
            str(port)]


def hostile_phase(args: argparse.Namespace, log: Path) -> dict:
    """Phase 1: good and hostile requests for `args.seconds`."""
    port = free_port()
    server = start_server(digitrec_command(port), port, log)
    try:
        load = Load(port, args.clients, hostile=HOSTILE_SHARE)
        load.start()
        time.sleep(args.seconds)
        outcomes = load.stop()
    finally:
        stop_server(server)
    good = [o for o in outcomes if o.kind == "good"]
    latencies = [(o.end - o.start) * 1e3 for o in good if o.status == 200]
    by_kind: dict[str, dict[str, int]] = {}
    for o in outcomes:
        if o.kind != "good":
            key = str(o.status) if o.status else o.failure
            by_kind.setdefault(o.kind, {}).setdefault(key, 0)
            by_kind[o.kind][key] += 1
    return {"seconds": args.seconds, "clients": args.clients, "requests": len(outcomes),
            "good": len(good), "good_ok": len(latencies),
            "good_errors": len(good) - len(latencies),
            "good_rps": len(latencies) / args.seconds,
            "good_p50_ms": percentile(latencies, 50), "good_p99_ms": percentile(latencies, 99),
            "hostile": by_kind,
            "5xx": sum(1 for o in outcomes if o.status and o.status >= 500)}


def kill_phase(args: argparse.Namespace, log: Path) -> dict:
    """Phase 2: good load with one retry; a worker SIGKILLed every `args.kill_every` s."""
    port = free_port()
    server = start_server(digitrec_command(port), port, log)
    kills = []
    try:
        load = Load(port, args.clients, retry=True)
        load.start()
        for _ in range(args.kills):
            time.sleep(args.kill_every)
            before = set(worker_pids(server.pid))
            victim = sorted(before)[0]
            killed_at = time.perf_counter()
            os.kill(victim, signal.SIGKILL)
            replaced_at = None
            while time.perf_counter() - killed_at < args.kill_every:
                if set(worker_pids(server.pid)) - before:
                    replaced_at = time.perf_counter()
                    break
                time.sleep(0.005)
            kills.append((killed_at, replaced_at))
        time.sleep(args.kill_every)
        outcomes = load.stop()
    finally:
        stop_server(server)
    bin_s = 0.25
    first = outcomes[0].start
    bins: dict[int, int] = {}
    for o in outcomes:
        if o.status == 200:
            bins[int((o.end - first) / bin_s)] = bins.get(int((o.end - first) / bin_s), 0) + 1
    recoveries = []
    for killed_at, replaced_at in kills:
        k0 = int((killed_at - first) / bin_s)
        level = statistics.median(bins.get(k, 0) for k in range(max(0, k0 - 12), k0))
        back = next((k for k in range(k0 + 1, k0 + int(args.kill_every / bin_s))
                     if bins.get(k, 0) >= 0.9 * level and bins.get(k + 1, 0) >= 0.9 * level),
                    None)
        recoveries.append({
            "replacement_started_s": None if replaced_at is None else replaced_at - killed_at,
            "throughput_back_s": None if back is None else (back + 1) * bin_s
            - (killed_at - first)})
    hit = [o for o in outcomes if o.retried]
    return {"kills": len(kills), "requests": len(outcomes),
            "ok": sum(1 for o in outcomes if o.status == 200),
            "hit_and_retried": len(hit),
            "lost_after_retry": sum(1 for o in hit if o.status != 200),
            "non_200_answers": sum(1 for o in outcomes if o.status not in (None, 200)),
            "recoveries": recoveries}


def term_phase(command: list[str], port: int, args: argparse.Namespace, log: Path) -> dict:
    """Phase 3: good load without retries; SIGTERM to the master after `args.kill_every` s."""
    server = start_server(command, port, log)
    try:
        load = Load(port, args.clients)
        load.start()
        time.sleep(args.kill_every)
        term_at = time.perf_counter()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        exited_at = time.perf_counter()
        time.sleep(1.5)  # clients that tried during the stop see its end
        outcomes = load.stop()
    finally:
        stop_server(server)
    after = [o for o in outcomes if o.end >= term_at]
    return {"exit_s": exited_at - term_at, "requests_after_term": len(after),
            "answered_200": sum(1 for o in after if o.status == 200 and o.start < exited_at),
            "other_answers": sum(1 for o in after if o.status not in (None, 200)),
            "failed_before_send": sum(1 for o in after if o.failure == "before-send"),
            "failed_after_send": sum(1 for o in after if o.failure == "after-send")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="length of the hostile phase")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()
    results: dict[str, object] = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                                  "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                  "cores": os.cpu_count(), "load_avg": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        print("== hostile load", file=sys.stderr)
        results["hostile"] = hostile_phase(args, logs / "hostile.log")
        print(json.dumps(results["hostile"]), file=sys.stderr)
        print("== SIGKILL a worker under load", file=sys.stderr)
        results["kill"] = kill_phase(args, logs / "kill.log")
        print(json.dumps(results["kill"]), file=sys.stderr)
        print("== SIGTERM under load: digitrec serve, then plain gunicorn -k sync",
              file=sys.stderr)
        port = free_port()
        results["term"] = term_phase(digitrec_command(port), port, args, logs / "term.log")
        port = free_port()
        plain = [sys.executable, "-m", "gunicorn", "-c", "src/digitrec/web/gunicorn_conf.py",
                 "-k", "sync", "-b", f"127.0.0.1:{port}", "digitrec.web:create_app()"]
        results["term_plain_sync"] = term_phase(plain, port, args, logs / "term-plain.log")
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
