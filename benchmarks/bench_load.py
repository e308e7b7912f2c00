"""Load: 20 concurrent clients for 30 s against the twin's predict API over loopback.

The twin serves predict in-process (as one Lambda container would, one invocation at a time), so
this measures the handler plus HTTP plus the twin's API Gateway emulation under a burst, and
whether the serving process's memory stays flat. The clients run in a second process. Bounded:
fixed client count and duration, 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from bench_cost import template_memory

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = int(os.environ.get("BENCH_LOAD_CLIENTS", "20"))
SECONDS = float(os.environ.get("BENCH_LOAD_SECONDS", "30"))
ALARM_P99_MS = 250.0  # template.yaml PredictLatencyAlarm threshold
STAGE_RATE = 100.0  # template.yaml PredictApi stage throttling (requests/s)
MEMORY_MB = float(template_memory() or 1769)  # template.yaml PredictFunction MemorySize

CLIENT = textwrap.dedent(
    """
    import json, sys, threading, time, urllib.request, urllib.error
    url, clients, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()
    lat, errors, lock = [], [], threading.Lock()
    stop = time.monotonic() + seconds
    def client():
        while time.monotonic() < stop:
            req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    r.read(); ok = r.status == 200
            except urllib.error.HTTPError as e:
                ok = False; e.read()
            except Exception:
                ok = False
            d = (time.perf_counter() - t) * 1000
            with lock:
                (lat if ok else errors).append(d)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    [t.start() for t in threads]; [t.join() for t in threads]
    print(json.dumps({"latencies_ms": lat, "errors": len(errors)}))
    """
)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run() -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from modelops.storage.registry import Registry
    from modelops_local.twin import Twin
    from tests.integration.predict_support import models, publish

    with Twin(ROOT / "template.yaml", port=0, api_port=0, echo_handler_output=False) as twin:
        reg = Registry(twin.client("s3"), twin.outputs["RegistryBucketName"])
        publish(reg, "load", models()["multiclass"], capture_sample_rate=0.0)
        url = f"{twin.api_url}/models/load/predict"
        warm = subprocess.run(
            [sys.executable, "-c", CLIENT, url, "4", "3"], capture_output=True, text=True, check=True
        )
        json.loads(warm.stdout)
        # Two equal halves: the first may still grow (allocator pools, caches reaching their size),
        # the second shows whether memory keeps growing with traffic.
        before = rss_mb()
        seen = twin.mark()
        started = time.monotonic()
        half = str(SECONDS / 2)
        outs = []
        middle = before
        for phase in range(2):
            outs.append(
                subprocess.run(
                    [sys.executable, "-c", CLIENT, url, str(CLIENTS), half],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=SECONDS + 120,
                )
            )
            if phase == 0:
                middle = rss_mb()
        wall = time.monotonic() - started
        after = rss_mb()
        twin.wait_idle(60)
        durations = sorted(i.duration_ms for i in twin.invocations_of("PredictFunction", since=seen))
    parts = [json.loads(o.stdout) for o in outs]
    got = {
        "latencies_ms": [v for p in parts for v in p["latencies_ms"]],
        "errors": sum(p["errors"] for p in parts),
    }
    lat = sorted(got["latencies_ms"])
    n = len(lat)
    client_p50, client_p99 = statistics.median(lat), lat[min(n - 1, int(0.99 * n))]
    p99 = durations[min(len(durations) - 1, int(0.99 * len(durations)))]
    rps = n / wall
    note = (
        f"{CLIENTS} clients x {SECONDS:.0f} s, {n} answers, {got['errors']} errors; "
        f"RSS {before:.0f} -> {middle:.0f} (first half) -> {after:.0f} MB (second half)"
    )
    return [
        {
            "name": "predict_load_p99",
            "value": round(p99, 3),
            "unit": "ms",
            "peer": "PredictLatencyAlarm threshold",
            "peer_value": ALARM_P99_MS,
            "ratio": round(ALARM_P99_MS / p99, 1),
            "notes": f"handler duration under load (what the alarm watches); client-side p50 {client_p50:.1f} ms, "
            f"p99 {client_p99:.1f} ms, mostly queueing: the twin runs one invocation at a time where "
            f"Lambda would start more containers; {note}",
        },
        {
            "name": "predict_load_throughput",
            "value": round(rps, 1),
            "unit": "req/s",
            "peer": "API stage throttle (RateLimit)",
            "peer_value": STAGE_RATE,
            "ratio": round(rps / STAGE_RATE, 2),
            "notes": "one process, one invocation at a time (like one Lambda container)",
        },
        {
            "name": "predict_load_errors",
            "value": got["errors"],
            "unit": "count",
            "peer": "allowed",
            "peer_value": 0,
            "ratio": 1.0 if got["errors"] == 0 else 0.0,
            "notes": note,
        },
        {
            "name": "predict_load_rss_growth",
            "value": round(after - middle, 1),
            "unit": "MB",
            "peer": "PredictFunction MemorySize",
            "peer_value": MEMORY_MB,
            "ratio": round(MEMORY_MB / max(after - middle, 1.0), 1),
            "notes": "growth over the second half of the load (flat: about 0); " + note,
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
