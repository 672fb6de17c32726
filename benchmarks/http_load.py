"""HTTP load: `digitrec serve` (gunicorn) vs a seed-style Flask app, side by side in one run.

Each server runs on 127.0.0.1 on a free port; a load generator holds 16 connections for 30 s,
each POSTing the page's request (`{"image": "data:image/png;base64,..."}` of a 280x280 canvas
PNG) to /api/predict; connections are kept alive where the server allows it (digitrec's default
sync workers close each connection after its response, and the generator opens a new one).
The generator is wrk when installed (`apt-get install wrk`), else a Python one (threads over
http.client). Reports req/s, p50/p90/p99 latency, errors, and the server's CPU time per request
(all its processes, from /proc, during the load).

The seed-style app is written here: Flask's threaded server, the ensemble loaded once (eager
reference path), the image resized straight to 28x28 (no MNIST preprocessing), one endpoint.

    .venv/bin/python benchmarks/http_load.py [--weights DIR] [--seconds 30] [--connections 16]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _canvas import canvas_png  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WRK_SCRIPT = """
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "status_errors": %d, "socket_errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def seed_app(weights: str | None):
    """The seed-style app: one endpoint, resize to 28x28, the eager ensemble loaded once."""
    import numpy as np
    import torch
    from flask import Flask, jsonify, request
    from PIL import Image, ImageOps

    from digitrec.models import load_ensemble, to_tensor

    ensemble, _ = load_ensemble(weights)
    app = Flask("seed")

    @app.post("/api/predict")
    def predict():
        data_url = request.get_json()["image"]
        raw = base64.b64decode(data_url.split(",", 1)[1])
        image = Image.open(io.BytesIO(raw)).convert("L").resize((28, 28))
        pixels = np.asarray(ImageOps.invert(image), dtype=np.uint8)
        with torch.inference_mode():
            probs = ensemble(to_tensor(pixels[None]))[0]
        digit = int(probs.argmax())
        return jsonify(digit=digit, confidence=float(probs[digit]))

    return app


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, path: str, body: bytes | None, timeout: float = 120.0) -> None:
    """Poll until the server answers 200 on `path` (POST when a body is given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}", data=body,
                headers={"Content-Type": "application/json"} if body else {})
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"server on port {port} not ready after {timeout:.0f}s")


def run_wrk(port: int, body_file: Path, connections: int, seconds: int) -> dict:
    """wrk with 2 threads; the Lua `done` hook prints a JSON summary."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
             "-s", script.name, f"http://127.0.0.1:{port}/api/predict"],
            capture_output=True, text=True, check=True, env={**os.environ,
                                                            "BODY_FILE": str(body_file)})
    finally:
        os.unlink(script.name)
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    return {"generator": "wrk", "requests": r["requests"],
            "rps": r["requests"] / (r["duration_us"] / 1e6), "p50_ms": r["p50_us"] / 1e3,
            "p90_ms": r["p90_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3,
            "errors": r["status_errors"] + r["socket_errors"]}


def run_python(port: int, body: bytes, connections: int, seconds: int) -> dict:
    """Fallback generator: one thread per keep-alive http.client connection."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, bad = [], 0
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                conn.request("POST", "/api/predict", body,
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    bad += 1
                mine.append(time.perf_counter() - start)
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {"generator": "python", "requests": len(latencies), "rps": len(latencies) / elapsed,
            "p50_ms": q[49] * 1e3, "p90_ms": q[89] * 1e3, "p99_ms": q[98] * 1e3,
            "errors": errors[0]}


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) used so far by a process and its children (gunicorn's
    workers), from /proc; None where there is no /proc."""
    try:
        ticks, total = os.sysconf("SC_CLK_TCK"), 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)"
            except OSError:  # the process ended meanwhile
                continue
            if pid in (int(stat.parent.name), int(fields[1])):
                total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / ticks
    except (OSError, ValueError):
        return None


def served_inference(port: int) -> str | None:
    """What runs the models in a digitrec server ("onnxruntime int8", ...), from /api/models;
    None for a server without that endpoint (the seed-style app)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models", timeout=10) as r:
            return json.load(r).get("inference")
    except (OSError, ValueError):
        return None


def measure(command: list[str], port: int, body: bytes, body_file: Path, args) -> dict:
    """Start a server, wait for it, load it (recording its CPU time per request), stop it."""
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_ready(port, "/api/predict", body)
        served = served_inference(port)
        before = cpu_seconds(server.pid)
        if shutil.which("wrk") and not args.python_client:
            result = run_wrk(port, body_file, args.connections, args.seconds)
        else:
            result = run_python(port, body, args.connections, args.seconds)
        after = cpu_seconds(server.pid)
        result["cpu_ms"] = (None if before is None or after is None or not result["requests"]
                            else (after - before) * 1e3 / result["requests"])
        result["inference"] = served
        return result
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def main() -> int:
    """Load both servers in turn and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="models directory (default: the bundled ensemble)")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: digitrec's)")
    parser.add_argument("--threads", type=int, help="gunicorn threads per worker (default 1: "
                        "sync workers; more: gthread workers)")
    parser.add_argument("--python-client", action="store_true", help="don't use wrk")
    parser.add_argument("--only", choices=["digitrec", "seed"])
    parser.add_argument("--inference", default="default",
                        help="digitrec inference backends to serve in turn, e.g. default,onnx "
                        "(default: what the app picks, int8 for the bundled weights)")
    parser.add_argument("--micro-batch", default="on",
                        help="digitrec with cross-request batching on, off, or on,off")
    parser.add_argument("--serve-seed", type=int, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    load_at_start = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    if args.serve_seed:
        seed_app(args.weights).run(host="127.0.0.1", port=args.serve_seed, threaded=True)
        return 0

    png = canvas_png()
    body = json.dumps({"image": "data:image/png;base64," + base64.b64encode(png).decode()})
    body = body.encode()
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        f.write(body)
    body_file = Path(f.name)
    python = sys.executable
    weights = ["--weights", args.weights] if args.weights else []
    results = {}
    try:
        variants = [(backend, batching) for backend in args.inference.split(",")
                    for batching in args.micro_batch.split(",")]
        for backend, batching in variants if args.only in (None, "digitrec") else []:
            port = free_port()
            extra = (["--workers", str(args.workers)] if args.workers else []) + (
                ["--threads", str(args.threads)] if args.threads else [])
            command = [python, "-m", "digitrec", "serve", "--host", "127.0.0.1",
                       "--port", str(port), *weights, *extra]
            if backend == "default":
                os.environ.pop("DIGITREC_INFERENCE", None)
            else:
                os.environ["DIGITREC_INFERENCE"] = backend  # read by the app (create_app)
            os.environ["DIGITREC_MICRO_BATCH"] = "1" if batching == "on" else "0"
            result = measure(command, port, body, body_file, args)
            name = (f"digitrec serve (gunicorn), {backend} ({result['inference']}), "
                    f"micro-batching {batching}")
            results[name] = result
        if args.only in (None, "seed"):
            port = free_port()
            command = [python, __file__, "--serve-seed", str(port), *weights]
            results["seed-style Flask app"] = measure(command, port, body, body_file, args)
    finally:
        body_file.unlink()

    print(f"\n# HTTP load: POST /api/predict (280x280 canvas PNG as a JSON data URL), "
          f"{args.connections} connections (kept alive where the server allows), "
          f"{args.seconds} s, "
          f"{os.cpu_count()} CPUs shared by server and generator, load average at start "
          f"{load_at_start}\n")
    print("| server | generator | requests | req/s | p50 ms | p90 ms | p99 ms | errors | "
          "server CPU ms/request |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        cpu = "n/a" if r["cpu_ms"] is None else f"{r['cpu_ms']:.2f}"
        print(f"| {name} | {r['generator']} | {r['requests']:,} | {r['rps']:.0f} | "
              f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
              f"{cpu} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
