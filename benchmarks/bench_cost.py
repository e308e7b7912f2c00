"""Cold start with and without SnapStart's restore path, and what a million predictions cost at each
memory size (docs/deploy.md "Memory and cost", "SnapStart").

``run()`` returns the rows ``make bench`` collects, measured on bench_predict's model (20 features,
Dense 64-32-1) with the registry on a moto server at 127.0.0.1, every measuring process pinned to one
CPU core (Lambda at 1,769 MB has one vCPU):

* ``predict_cold_start_fresh`` (ms): a fresh process to its first answer, as a Lambda cold start
  without SnapStart: Python, the imports, the service, the alias, manifest and artifact from S3, the
  interpreter, the first answer. Peer: the project's Init target (docs/predict.md).
* ``predict_cold_start_restore`` (ms): a fresh process imports, builds and runs the before-snapshot
  hook (``snapstart.before_snapshot``: the production model loaded); then only what a restored
  environment runs is timed: ``snapstart.after_restore`` (reseed, new clients, a new service keeping
  the interpreters) and the first answer (which reads the alias again). What this does not contain:
  Lambda's own restore of the microVM's memory (CloudWatch's ``Restore Duration``), which depends on
  the snapshot's size and which only a deployed function shows. Peer: the fresh cold start.
* ``predict_cost_per_million`` ($): a million single-row predictions at the memory size the sweep
  chooses (``choose``). Peer: the same at 1,769 MB.
* ``predict_cost_per_million_{M}mb`` ($), one per swept size: x86_64. Peer: arm64 at the same size.

The sweep: warm durations (a single row, a 100-row batch and the largest request the API accepts, a
1 MB body), the cold start (Init: a fresh process up to its imports; then the first request, whose
service build and model load Lambda's Duration metric counts) and the peak RSS after the largest
request are measured once, in processes pinned to one core, as the process's CPU time (every thread:
what Lambda's CPU share scales; another process's load on this machine does not inflate it), the
first request's waits on S3 as its wall time less its CPU time. Lambda gives a function CPU in proportion to its memory, one
vCPU at 1,769 MB (AWS: "configuration-memory"), and the handler runs one thread, so a duration
measured at one core is modelled at ``M`` MB as ``d x max(1, 1769 / M)``: slower below 1,769 MB, no
faster above. Init is not scaled (Lambda gives Init burst CPU: https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html).
Billed duration is rounded up to the millisecond; prices are us-east-1's (``PRICES``). The memory
size chosen (``choose``) is the cheapest, at x86_64 prices, that meets every target: the modelled p99
of the 100-row batch and of the largest request within the PredictLatencyAlarm threshold (250 ms),
the modelled cold start within 1 s (the reference's p99 cold start without SnapStart), and at least
twice the peak RSS. The wait is the least of the runs (the moto server answering it runs in this
process, unpinned, and another process's load only adds to it).
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import bench_predict as bp

ROOT = Path(__file__).resolve().parents[1]
COLD_RUNS = 5
MEMORY_SIZES = (128, 256, 512, 1024, 1769, 3008)
ONE_VCPU_MB = 1769
TARGET_P99_MS = 250.0  # template.yaml PredictLatencyAlarm: p99 Duration over 250 ms
COLD_START_TARGET_MS = 1000.0  # docs/predict.md: cold start p99 <= 1 s without SnapStart
RSS_HEADROOM = 2.0
PRICES = {  # us-east-1, AWS Lambda's public price list as of 2026 (aws.amazon.com/lambda/pricing)
    "x86_64": {"gb_second": 0.0000166667, "request": 0.20 / 1e6},
    "arm64": {"gb_second": 0.0000133334, "request": 0.20 / 1e6},
}
SNAPSTART_PRICES = {"cache_gb_second": 0.0000015046, "restore_gb": 0.0001397998}  # same source

_COLD = (
    bp._PRELUDE
    + bp._EVENT
    + textwrap.dedent(
        """
        from functions.predict.app import lambda_handler
        imported, imported_cpu = time.perf_counter(), time.process_time()
        if work["mode"] == "restore":
            from modelops.stages.predict import snapstart
            assert snapstart.before_snapshot() == 1, "the production model was not loaded"
            restored = time.perf_counter()  # the snapshot would be taken here
            snapstart.after_restore()
            hook_ms = (time.perf_counter() - restored) * 1000.0
        result = lambda_handler(api_event(work["body"]), Ctx())
        done, done_cpu = time.perf_counter(), time.process_time()
        timings = {"first_ms": (done - imported) * 1000.0, "init_cpu_ms": imported_cpu * 1000.0,
                   "first_cpu_ms": (done_cpu - imported_cpu) * 1000.0}
        if work["mode"] == "restore":
            timings.update(restore_ms=(done - restored) * 1000.0, hook_ms=hook_ms)
        sys.stdout.write(f"READY {result['statusCode']} " + json.dumps(timings) + "\\n")
        sys.stdout.flush()
        if work["mode"] == "fresh":  # the memory a container needs: after the largest request it accepts
            import resource
            assert lambda_handler(api_event(open(work["big_path"]).read()), Ctx())["statusCode"] == 200
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            sys.stdout.write(f"RSS {rss}\\n")
            sys.stdout.flush()
        os._exit(0)
        """
    )
)

_WARM = (
    bp._PRELUDE
    + bp._EVENT
    + textwrap.dedent(
        """
        import resource
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                          POWERTOOLS_SERVICE_NAME="predict", POWERTOOLS_METRICS_NAMESPACE="ModelOps",
                          POWERTOOLS_TRACE_DISABLED="true")
        sys.stdout = open(os.devnull, "w")  # EMF lines
        import boto3
        from moto import mock_aws

        class FirehoseStub:
            def put_record_batch(self, DeliveryStreamName, Records):
                return {"FailedPutCount": 0, "RequestResponses": [{"RecordId": "r"} for _ in Records]}

        def timed(fn, n):  # the process's CPU time (every thread): what Lambda's CPU share scales
            out = []
            for _ in range(n):
                t = time.process_time_ns(); fn(); out.append(time.process_time_ns() - t)
            return out

        rows = json.load(open(os.path.join(work["dir"], "requests.json")))["rows"]
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket=work["bucket"])
            from modelops.storage.registry import Registry
            from modelops.stages.predict.service import PredictService, configure
            from modelops.stages.predict.settings import Settings
            reg = Registry(s3, work["bucket"])
            schema = {"task": "binary", "target": "y", "classes": [0, 1],
                      "features": [{"name": f"f{i}", "dtype": "float32"} for i in range(work["features"])]}
            m = reg.publish_version("bench", {"tflite": ("model.tflite", open(os.path.join(work["dir"], "model.tflite"), "rb").read())},
                                    {"task": "binary", "schema": schema, "spec": {"monitoring": {"capture_sample_rate": 1.0}}})
            reg.promote("bench", m.version)
            from functions.predict.app import lambda_handler
            settings = Settings(registry_bucket=work["bucket"], capture_stream="captures",
                                artifact_dir=os.path.join(work["dir"], "artifacts-warm"))
            svc = PredictService.from_settings(settings, s3=s3, firehose_factory=FirehoseStub)
            configure(svc)
            ctx = Ctx()
            one = api_event(json.dumps({"instances": rows[:1]}))
            hundred = api_event(json.dumps({"instances": rows[:100]}))
            big = api_event(open(work["big_path"]).read())
            assert lambda_handler(one, ctx)["statusCode"] == 200
            assert lambda_handler(hundred, ctx)["statusCode"] == 200
            timed(lambda: lambda_handler(one, ctx), 500)
            single = timed(lambda: lambda_handler(one, ctx), work["single_n"])
            timed(lambda: lambda_handler(hundred, ctx), 50)
            batch = timed(lambda: lambda_handler(hundred, ctx), work["batch_n"])
            assert lambda_handler(big, ctx)["statusCode"] == 200
            largest = timed(lambda: lambda_handler(big, ctx), work["big_n"])
            assert svc.sink.flush(30)
            out = {
                "single_p50_ms": pct(single, 0.5) / 1000, "single_p99_ms": pct(single, 0.99) / 1000,
                "single_mean_ms": sum(single) / len(single) / 1e6,
                "batch_p50_ms": pct(batch, 0.5) / 1000, "batch_p99_ms": pct(batch, 0.99) / 1000,
                "batch_mean_ms": sum(batch) / len(batch) / 1e6,
                "largest_p99_ms": pct(largest, 0.99) / 1000,
            }
        json.dump(out, open(work["out"], "w"))
        """
    )
)


def largest_body(rows: list[list[float]], limit: int = 1_048_576) -> str:
    """The largest POST predict body the API accepts (``MAX_BODY_BYTES``, 1 MB): the rows repeated."""
    out: list[list[float]] = []
    size = len('{"instances": []}')
    while size + len(json.dumps(rows[len(out) % len(rows)])) + 2 <= limit:
        row = rows[len(out) % len(rows)]
        size += len(json.dumps(row)) + 2
        out.append(row)
    body = json.dumps({"instances": out})
    assert len(body.encode()) <= limit
    return body


def _cold_run(work: dict[str, Any], env: dict[str, str]) -> dict[str, float]:
    """A fresh process: wall milliseconds from its start to its first answer, and its own timings."""
    wall, (_, doc), after = bp.cold_process(_COLD, work, env)
    got: dict[str, float] = {"wall_ms": wall, **json.loads(doc)}
    for rest in after:
        if rest.startswith("RSS "):
            got["peak_rss_mb"] = float(rest.split()[1])
    return got


def cold_starts(work: dict[str, Any], body: str) -> dict[str, list[dict[str, float]]]:
    """Fresh and restore-path processes, alternating, against one moto server."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        bp.publish_for_cold_start(endpoint, work)
        common = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "REGISTRY_BUCKET": bp.BUCKET,
            "CAPTURE_STREAM": "bench-captures",
            "POWERTOOLS_SERVICE_NAME": "predict",
            "POWERTOOLS_METRICS_NAMESPACE": "ModelOps",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        out: dict[str, list[dict[str, float]]] = {"fresh": [], "restore": []}
        for i in range(COLD_RUNS):
            for mode in ("fresh", "restore"):
                env = bp._env(ROOT, {**common, "ARTIFACT_DIR": os.path.join(work["dir"], f"{mode}-{i}")})
                out[mode].append(_cold_run({**work, "body": body, "mode": mode}, env))
        return out
    finally:
        server.stop()


# ---------------------------------------------------------------------- the model of cost
def scale(memory_mb: int) -> float:
    """How much longer a CPU-bound, single-threaded duration measured at one vCPU takes at this size."""
    return max(1.0, ONE_VCPU_MB / memory_mb)


def cost_per_million(memory_mb: int, duration_ms: float, arch: str = "x86_64") -> float:
    """Dollars for a million invocations of ``duration_ms`` (at one vCPU) at ``memory_mb``."""
    price = PRICES[arch]
    billed_s = max(1, math.ceil(duration_ms * scale(memory_mb))) / 1000.0
    return 1e6 * (price["request"] + memory_mb / 1024 * billed_s * price["gb_second"])


def sweep(warm: dict[str, float], cold: dict[str, float]) -> list[dict[str, Any]]:
    """Each memory size: modelled latencies, cost per million single-row predictions, the verdict."""
    out = []
    for m in MEMORY_SIZES:
        s = scale(m)
        p99 = {"batch_100": warm["batch_p99_ms"] * s, "largest_request": warm["largest_p99_ms"] * s}
        # Init runs with burst CPU (not scaled); the first request's CPU is scaled, its waits on S3 are not
        cold_ms = cold["init_ms"] + cold["first_cpu_ms"] * s + cold["first_wait_ms"]
        fits_memory = m >= RSS_HEADROOM * cold["peak_rss_mb"]
        out.append(
            {
                "memory_mb": m,
                "single_p99_ms": warm["single_p99_ms"] * s,
                "p99_ms": p99,
                "cold_ms": cold_ms,
                "fits_memory": fits_memory,
                "meets_target": fits_memory
                and all(v <= TARGET_P99_MS for v in p99.values())
                and cold_ms <= COLD_START_TARGET_MS,
                "x86_64": cost_per_million(m, warm["single_mean_ms"], "x86_64"),
                "arm64": cost_per_million(m, warm["single_mean_ms"], "arm64"),
                "x86_64_rows_batch_100": cost_per_million(m, warm["batch_mean_ms"], "x86_64") / 100,
            }
        )
    return out


def choose(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The cheapest size that meets the target (the largest swept when none does)."""
    ok = [p for p in points if p["meets_target"]]
    return min(ok, key=lambda p: (p["x86_64"], p["memory_mb"])) if ok else points[-1]


def template_memory() -> int | None:
    """PredictFunction's MemorySize in template.yaml."""
    text = (ROOT / "template.yaml").read_text()
    block = re.search(r"\n  PredictFunction:\n(.*?)\n  [A-Za-z0-9]+:\n", text, re.S)
    got = re.search(r"\n      MemorySize: (\d+)", block.group(1)) if block else None
    return int(got.group(1)) if got else None


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        work: dict[str, Any] = {
            "dir": tmp,
            "features": bp.FEATURES,
            "bucket": bp.BUCKET,
            "single_n": 3000,
            "batch_n": 500,
            "big_n": 30,
        }
        bp._script(bp._BUILD, work)
        rows = json.loads(Path(tmp, "requests.json").read_text())["rows"]
        big = largest_body(rows)
        work["big_path"] = str(Path(tmp, "largest.json"))
        Path(work["big_path"]).write_text(big)
        warm = bp._script(_WARM, work)
        warm["largest_rows"] = len(json.loads(big)["instances"])
        cold = cold_starts(work, json.dumps({"instances": rows[:1]}))
    fresh = statistics.median(r["wall_ms"] for r in cold["fresh"])
    restore = statistics.median(r["restore_ms"] for r in cold["restore"])
    hook = statistics.median(r["hook_ms"] for r in cold["restore"])
    # the least of the runs: what a cold start costs without another process's interference
    model_cold = {
        "init_ms": statistics.median(r["init_cpu_ms"] for r in cold["fresh"]),
        "first_cpu_ms": statistics.median(r["first_cpu_ms"] for r in cold["fresh"]),
        "first_wait_ms": min(max(0.0, r["first_ms"] - r["first_cpu_ms"]) for r in cold["fresh"]),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in cold["fresh"]),
    }
    points = sweep(warm, model_cold)
    chosen = choose(points)
    at_1769 = next(p for p in points if p["memory_mb"] == ONE_VCPU_MB)
    in_template = template_memory()
    m = chosen["memory_mb"]
    restore_charge = SNAPSTART_PRICES["restore_gb"] * m / 1024
    cache_month = SNAPSTART_PRICES["cache_gb_second"] * m / 1024 * 30 * 86400

    def ms(vals: list[dict[str, float]], key: str) -> str:
        return ", ".join(f"{v[key]:.0f}" for v in vals)

    measured = (
        f"Measured at one core: single row p50 {warm['single_p50_ms'] * 1000:.0f} µs / p99 "
        f"{warm['single_p99_ms'] * 1000:.0f} µs; 100 rows p99 {warm['batch_p99_ms']:.2f} ms; largest request "
        f"({warm['largest_rows']} rows, 1 MB) p99 {warm['largest_p99_ms']:.1f} ms (CPU time); cold start: Init "
        f"{model_cold['init_ms']:.0f} ms CPU + first request {model_cold['first_cpu_ms']:.0f} ms CPU and "
        f"{model_cold['first_wait_ms']:.0f} ms waiting (medians; the wait the least of {COLD_RUNS}); "
        f"peak RSS after the largest request {model_cold['peak_rss_mb']:.0f} MB"
    )
    rows_out: list[dict[str, Any]] = [
        {
            "name": "predict_cold_start_fresh",
            "value": round(fresh, 1),
            "unit": "ms",
            "peer": "Init target at 1,769 MB without SnapStart (docs/predict.md)",
            "peer_value": 500.0,
            "ratio": round(500.0 / fresh, 2),
            "target": "<= 500 ms",
            "notes": (
                f"fresh process to first answer (Python, imports, service, alias + manifest + artifact from S3 on "
                f"a moto server, interpreter, answer), one core; median of {COLD_RUNS} ({ms(cold['fresh'], 'wall_ms')} "
                f"ms); the first request after the imports {ms(cold['fresh'], 'first_ms')} ms."
            ),
        },
        {
            "name": "predict_cold_start_restore",
            "value": round(restore, 1),
            "unit": "ms",
            "peer": "the fresh cold start (no SnapStart)",
            "peer_value": round(fresh, 1),
            "ratio": round(fresh / restore, 1),
            "target": "<= 150 ms",
            "notes": (
                f"a fresh process builds and loads the model (snapstart.before_snapshot), then only after_restore "
                f"(reseed, new clients, service rebuilt keeping the interpreter) + the first answer (the alias "
                f"read again from S3) are timed; median of {COLD_RUNS} ({ms(cold['restore'], 'restore_ms')} ms; "
                f"after_restore alone {hook:.0f} ms). "
                f"Lambda's own microVM restore (Restore Duration) is not in it: only a deployed function shows it."
            ),
        },
        {
            "name": "predict_cost_per_million",
            "value": round(chosen["x86_64"], 4),
            "unit": "$",
            "peer": "the same at 1,769 MB (the size before the sweep)",
            "peer_value": round(at_1769["x86_64"], 4),
            "ratio": round(at_1769["x86_64"] / chosen["x86_64"], 2),
            "target": "the cheapest size that meets the targets",
            "notes": (
                f"chosen {m} MB (template.yaml PredictFunction MemorySize: {in_template} MB"
                f"{'' if in_template == m else ', DIFFERENT'}): a million single-row predictions, x86_64, "
                f"us-east-1 prices as of 2026 ($0.20 per million requests, $0.0000166667 per GB-s; arm64 "
                f"${chosen['arm64']:.4f}); modelled at {m} MB: p99 100 rows {chosen['p99_ms']['batch_100']:.1f} ms, "
                f"largest request {chosen['p99_ms']['largest_request']:.0f} ms, cold start {chosen['cold_ms']:.0f} ms. "
                f"{measured}. Rows sent 100 per request: ${chosen['x86_64_rows_batch_100']:.4f} per million rows. "
                f"SnapStart at {m} MB adds ${restore_charge * 1000:.3f} per thousand restores and "
                f"${cache_month:.2f} per cached version per 30 days."
            ),
        },
    ]
    for p in points:
        mm = p["memory_mb"]
        verdict = "meets" if p["meets_target"] else ("misses" if p["fits_memory"] else "too small for")
        rows_out.append(
            {
                "name": f"predict_cost_per_million_{mm}mb",
                "value": round(p["x86_64"], 4),
                "unit": "$",
                "peer": "arm64 at the same size",
                "peer_value": round(p["arm64"], 4),
                "ratio": round(p["arm64"] / p["x86_64"], 3),
                "target": "p99 <= 250 ms, cold <= 1 s",
                "notes": (
                    f"{verdict} the target: modelled p99 100 rows {p['p99_ms']['batch_100']:.1f} ms, largest "
                    f"request {p['p99_ms']['largest_request']:.0f} ms (<= {TARGET_P99_MS:g}); cold start "
                    f"{p['cold_ms']:.0f} ms (<= {COLD_START_TARGET_MS:g}); single row p99 {p['single_p99_ms']:.3f} ms "
                    f"(billed 1 ms minimum); memory >= {RSS_HEADROOM:g} x peak RSS: "
                    f"{'yes' if p['fits_memory'] else 'no'}."
                ),
            }
        )
    return rows_out


if __name__ == "__main__":  # pragma: no cover
    for r in run():
        print(
            f"{r['name']:<34} {r['value']:>10} {r['unit']:<3} peer {r['peer_value']:>10}  ratio {r['ratio']}"
        )
        print(f"    {r['notes']}")
