"""Many writers at once through real servers (`digitrec serve`, gunicorn): 2 app instances x 4
workers posting 2,000 corrections against one PostgreSQL database, 4 workers against one
SQLite file. Every row is there, none twice, no 5xx; a worker killed mid-write loses no
committed correction and leaves no half row."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import random
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import digitrec_server
from dbfixtures import *  # noqa: F403 (the fixtures)
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from digitrec.feedback import FeedbackStore

POSTS = 2000
CLIENTS = 32  # requests in flight at once
BOUND_S = 420  # the whole burst must finish within this


def distinct_digits(count: int, seed: int = 0) -> list[tuple[bytes, str]]:
    """`count` different small PNGs of a stroke (a 1 or a 7, each slightly different) and a
    label for each."""
    rng = random.Random(seed)
    out = []
    for k in range(count):
        image = Image.new("L", (96, 96), 255)
        draw = ImageDraw.Draw(image)
        x0, x1 = rng.uniform(30, 66), rng.uniform(30, 66)
        if k % 2:
            draw.line([(20, 20), (76, 20), (x1, 80)], fill=0, width=8)
        else:
            draw.line([(x0, 14), (x1, 82)], fill=0, width=8)
        info = PngInfo()
        info.add_text("n", str(k))  # the bytes differ even where the strokes coincide
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
        out.append((buffer.getvalue(), str(rng.randrange(10))))
    assert len({data for data, _ in out}) == count  # all different
    return out


def post(base: str, image: bytes, label: str) -> tuple[int, dict]:
    """POST /api/feedback (a raw image body, the label in the query): status and JSON body;
    status 0 when the connection failed (no answer)."""
    request = urllib.request.Request(f"{base}/api/feedback?label={label}&mode=digit",
                                     data=image, method="POST",
                                     headers={"Content-Type": "image/png"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except (OSError, http.client.HTTPException):  # reset, or cut off mid-answer (IncompleteRead)
        return 0, {}


def burst(bases: list[str], items: list[tuple[bytes, str]],
          during: Callable[[int], None] | None = None) -> list[tuple[int, dict]]:
    """Post every item, spread over the servers, CLIENTS at a time; `during(k)` runs after
    the k-th answer (in the calling thread)."""
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(post, bases[k % len(bases)], data, label)
                   for k, (data, label) in enumerate(items)]
        results = []
        for k, future in enumerate(futures):
            results.append(future.result())
            if during:
                during(k)
    return results


def check_every_row_once(url: str, items: list[tuple[bytes, str]],
                         results: list[tuple[int, dict]]) -> None:
    """All answered 201, with distinct ids, and the database holds exactly those rows, each
    image once with its label."""
    statuses = [status for status, _ in results]
    assert statuses == [201] * len(items), {s: statuses.count(s) for s in set(statuses)}
    ids = [body["id"] for _, body in results]
    assert len(set(ids)) == len(ids)
    rows = {c.id: (hashlib.sha256(c.image).hexdigest(), c.label)
            for c in FeedbackStore.open(url).all()}
    assert sorted(rows) == sorted(ids)
    assert sorted(rows.values()) == sorted((hashlib.sha256(d).hexdigest(), label)
                                           for d, label in items)


def test_two_instances_of_four_workers_on_postgresql(pg_url, tmp_path):
    FeedbackStore.open(pg_url).close()  # the schema, before the burst (workers migrate too)
    items = distinct_digits(POSTS)
    with ExitStack() as stack:
        bases = [stack.enter_context(digitrec_server(tmp_path / f"serve{k}.log", workers=4,
                                                     env={"DIGITREC_DB_URL": pg_url}))
                 for k in range(2)]
        start = time.monotonic()
        results = burst(bases, items)
        elapsed = time.monotonic() - start
    assert elapsed < BOUND_S
    check_every_row_once(pg_url, items, results)


def test_four_workers_on_one_sqlite_file(sqlite_url, tmp_path):
    items = distinct_digits(POSTS, seed=1)
    with digitrec_server(tmp_path / "serve.log", workers=4,
                         env={"DIGITREC_DB_URL": sqlite_url}) as base:
        start = time.monotonic()
        results = burst([base], items)  # the workers migrate the new file on first use
        elapsed = time.monotonic() - start
    assert elapsed < BOUND_S
    check_every_row_once(sqlite_url, items, results)


def _workers_of(base: str) -> list[int]:
    """Process ids of the gunicorn workers of the server listening on base's port."""
    port = base.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and port.encode() in argv:
            children = (proc / "task" / proc.name / "children").read_text().split()
            return [int(pid) for pid in children]
    return []


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_worker_killed_mid_write_loses_no_committed_row(kind, request, tmp_path):
    url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "pg_url")
    FeedbackStore.open(url).close()
    items = distinct_digits(300, seed=2)
    killed = []
    with digitrec_server(tmp_path / "serve.log", workers=2,
                         env={"DIGITREC_DB_URL": url}) as base:
        def kill_one(k: int) -> None:
            if k in (100, 200):  # a worker mid-burst, twice (gunicorn starts a new one)
                pids = _workers_of(base)
                assert pids, "no gunicorn worker found"
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
        results = burst([base], items, during=kill_one)
    assert len(killed) == 2
    statuses = [status for status, _ in results]
    assert set(statuses) <= {201, 0}, statuses  # a lost connection, never a 5xx
    assert statuses.count(201) >= len(items) - 2 * CLIENTS
    answered = {body["id"] for status, body in results if status == 201}
    rows = {c.id: c for c in FeedbackStore.open(url).all()}
    assert answered <= set(rows)  # every acknowledged correction is there
    assert len(rows) <= len(items)
    for row in rows.values():  # whole rows only (the check constraint holds too)
        assert row.image and len(row.images28) == 784 and row.label and row.model_version
