"""`make demo`: the whole life of a model on the local twin, with real clients, in a few minutes.

spec + data (scikit-learn's breast cancer table, shipped inside the package) → training job → convert
and parity → registry v1 in production → predictions over HTTP → a second, larger dataset → v2 and
the promotion gate's decision → traffic with one feature shifted → monitor → drift alarm → one alert
on an SQS queue subscribed to AlertsTopic. Then, on the same twin, your own TensorFlow model both ways
(modelops_local.own_model, on scikit-learn's 8x8 digits): the CNN ``train.py`` of docs/training.md
uploaded with its data (script mode), served with image tensors and scored on the digits the platform
held out from it; and a CNN trained here with Keras, imported with ``modelops models import``, answering
over HTTP as Keras does within the parity tolerance. Ends by writing the fleet page as files (``modelops
ui build``'s site) and printing its ``file://`` URL. Leaves nothing running; exits 1 when a check fails.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from modelops_cli.status import StackAlarms
from modelops_cli.ui.data import FleetData
from modelops_cli.ui.site import Site
from modelops_local.lifecycle import Life, sklearn_table
from modelops_local.own_model import (
    IMPORT_MODEL,
    SCRIPT_MODEL,
    SCRIPT_SPEC,
    digits_csv,
    documented_script,
    held_out_digits,
    job_record,
    run_cli,
    train_outside,
)
from modelops_local.twin import Twin

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / ".modelops" / "demo"
MODEL = "tumours"
MIN_DIGIT_ACCURACY = 0.9
SPEC = {
    "task": "binary",
    "target": "label",
    "training": {
        "backend": "local",
        "epochs": 100,
        "batch_size": 32,
        "hidden_units": [16],
        "learning_rate": 0.005,
        "early_stopping_patience": 8,
        "validation_split": 0.2,
        "seed": 0,
    },
    "conversion": {"quantize": "dynamic_int8", "parity_tolerance": 1e-4},
    "promotion": {"metric": "auc", "min_improvement": 0.0},
    "monitoring": {"psi_threshold": 0.2, "capture_sample_rate": 1.0},
}


def use_colour(stream: TextIO) -> bool:
    """Bold titles only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org)."""
    return not os.environ.get("NO_COLOR") and stream.isatty()


def step(title: str) -> None:
    line = f"\033[1m▶ {title}\033[0m" if use_colour(sys.stdout) else f"▶ {title}"
    print(f"\n{line}", flush=True)


def say(msg: str) -> None:
    print(f"  {msg}", flush=True)


def _g(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, int | float) and not isinstance(v, bool) else "n/a"


def gate_lines(d: dict[str, Any]) -> list[str]:
    """The gate's comparison of v2 with production, on the same rows (docs/convert.md "The promotion gate")."""
    ev = d.get("evaluation") or {}
    metric, cand, prod = d.get("metric"), d.get("candidate"), d.get("production")
    out = []
    if d.get("source") in ("pinned", "heldout"):
        out.append(
            f"evaluation rows: {ev.get('rows')} ({d.get('source')}: {len(ev.get('sha256') or [])} stored CSV(s), "
            f"{ev.get('duplicates', 0)} duplicate rows dropped)"
        )
        out.append(
            f"on those same rows: v{cand} {metric} {_g(d.get('candidate_value'))}, "
            f"production v{prod} {metric} {_g(d.get('production_value'))}"
        )
    iv = d.get("interval")
    if iv:
        out.append(
            f"improvement {_g(iv.get('improvement'))}, 95% interval [{_g(iv.get('lower'))}, {_g(iv.get('upper'))}] "
            f"({iv.get('resamples')} paired bootstrap resamples, seed {iv.get('seed')}); "
            f"promote only if the lower bound > {d.get('min_improvement')}"
        )
    out.append(f"gate: {d.get('decision')}: {d.get('reason') or d}")
    return out


def _io(schema: dict[str, Any]) -> str:
    """A tensor schema's inputs and outputs: ``image [8, 8, 1] float32 → output_0 [10] float32``."""

    def one(t: dict[str, Any]) -> str:
        return f"{t.get('name')} {t.get('shape')} {t.get('dtype')}"

    return (
        f"{', '.join(map(one, schema.get('inputs', [])))} → {', '.join(map(one, schema.get('outputs', [])))}"
    )


def script_mode(life: Life) -> bool:
    """Your ``train.py`` and its data uploaded together: trained, converted, served with image tensors;
    True when it is right on at least MIN_DIGIT_ACCURACY of the digits the platform held out."""
    step("Your own TensorFlow model (1/2): your train.py uploaded with its data (script mode)")
    script = documented_script()
    life.upload_spec(SCRIPT_MODEL, SCRIPT_SPEC)
    say(
        f"  the spec's training.entry_point {SCRIPT_SPEC['training']['entry_point']!r} names the script to run"
    )
    key = f"datasets/{SCRIPT_MODEL}/code/train.py"
    life.s3().put_object(Bucket=life.data_bucket, Key=key, Body=script)
    say(
        f"uploaded your script      s3://{life.data_bucket}/{key} "
        f'({script.count(b"\n")} lines: docs/training.md "A CNN on images", a small CNN on 8×8 images)'
    )
    life.upload_dataset(SCRIPT_MODEL, "digits.csv", digits_csv())
    life.settle()
    if life.versions(SCRIPT_MODEL) != [1]:
        say(f"{SCRIPT_MODEL} has versions {life.versions(SCRIPT_MODEL)}, not [1]: the script's job failed?")
        return False
    m = life.manifest(SCRIPT_MODEL, 1)
    job = job_record(life, m.get("training")["job"])
    split = job["split"]
    say(
        f"job {job['job']} ran {job['code']['entry_point']} (code sha256 {job['code']['sha256'][:12]}…) on "
        f"{split['train']['rows']} train rows; the platform kept {split['evaluation']['rows']} rows back"
    )
    parity = m.get("parity", {}).get("float32", {})
    say(f"version 1: {_io(m.get('schema'))}; artifacts {sorted(m.artifacts)}")
    say(
        f"parity float32 max |Δ| = {parity.get('max_abs_diff')} on the {parity.get('rows')} images "
        f"of the script's sample.npz; production → v{life.production(SCRIPT_MODEL)}"
    )

    step("Predict with image tensors (TF Serving's row format) on the digits the script never saw")
    x, y = held_out_digits(life, job)
    answer = life.predict(SCRIPT_MODEL, x.tolist())
    got = np.asarray(answer.get("labels") or [], dtype=np.int64)  # the classes the job's data named
    argmax = np.asarray(answer["predictions"], dtype=np.float64).argmax(axis=1)
    if got.shape != y.shape or not np.array_equal(got, argmax):
        say(
            f"the answer's labels do not name each image's highest probability: {answer.get('labels')!r:.200}"
        )
        return False
    accuracy = float(np.mean(got == y))
    say(
        f'POST {life.twin.api_url}/models/{SCRIPT_MODEL}/predict {{"instances": [{len(x)} images, each '
        f"8×8×1]}} → version {answer['version']}, ten probabilities and a label per image"
    )
    say(f"digits {y[:12].tolist()}, labels {got[:12].tolist()}, …")
    say(f"accuracy on the {len(y)} held-out digits: {accuracy:.3f} (the demo wants ≥ {MIN_DIGIT_ACCURACY})")
    if accuracy < MIN_DIGIT_ACCURACY:
        say(f"the script's model is right on only {accuracy:.3f} of the held-out digits: something is wrong")
        return False
    return True


def imported(life: Life) -> bool:
    """A CNN trained here, outside the platform, imported with the CLI; True when predict over HTTP
    answers what Keras answers, within the parity tolerance convert recorded."""
    step("Your own TensorFlow model (2/2): a Keras model trained here, outside the platform, imported")
    folder = OUT / "digits"
    outside = train_outside(folder)
    say(
        f"trained a CNN with Keras in this process ({outside.epochs} epochs on {outside.train_rows} digits); "
        f"saved {outside.path.relative_to(ROOT)} and {outside.sample.name} (256 of its training images)"
    )
    args = [
        "models",
        "import",
        IMPORT_MODEL,
        str(outside.path.relative_to(ROOT)),
        "--sample",
        str(outside.sample.relative_to(ROOT)),
        "--spec",
        str(outside.spec.relative_to(ROOT)),
    ]
    say(f"$ modelops {' '.join(args)}")
    done = run_cli(life.twin, args, cwd=ROOT)
    for line in (done.stdout + (done.stderr if done.returncode else "")).strip().splitlines()[-20:]:
        say(f"  {line}")
    if done.returncode != 0:
        say(f"`modelops models import` exited with status {done.returncode}")
        return False
    life.settle()
    if life.versions(IMPORT_MODEL) != [1]:
        say(f"{IMPORT_MODEL} has versions {life.versions(IMPORT_MODEL)}, not [1]: convert refused it?")
        return False
    m = life.manifest(IMPORT_MODEL, 1)
    parity = m.get("parity", {}).get("float32", {})
    tolerance = float(parity.get("tolerance"))
    say(
        f"convert: version 1 (source {m.get('training')['record']['source']}), {_io(m.get('schema'))}; "
        f"parity float32 max |Δ| = {parity.get('max_abs_diff')} on {parity.get('rows')} images, "
        f"tolerance {tolerance}; production → v{life.production(IMPORT_MODEL)}"
    )
    answer = life.predict(IMPORT_MODEL, outside.x_held.tolist())
    probs = np.asarray(answer["predictions"], dtype=np.float64)
    if probs.shape != outside.expected.shape:
        say(
            f"predict answered {probs.shape} probabilities, Keras {outside.expected.shape}: something is wrong"
        )
        return False
    diff = float(np.max(np.abs(probs - outside.expected)))
    accuracy = float(np.mean(probs.argmax(axis=1) == outside.y_held))
    say(
        f"POST {life.twin.api_url}/models/{IMPORT_MODEL}/predict with the {len(probs)} digits Keras did not "
        f"train on → version {answer['version']}"
    )
    say(
        f"max |HTTP − Keras| over {probs.size} probabilities = {diff:.3g} (tolerance {tolerance}); accuracy {accuracy:.3f}"
    )
    if not diff <= tolerance:
        say("predict does not answer what the Keras model answers: something is wrong")
        return False
    return True


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO lines (convert, training)
    started = time.monotonic()
    logging.basicConfig(level=logging.WARNING, format="  %(message)s")
    logging.getLogger("modelops.twin.training").setLevel(logging.INFO)  # per-epoch progress lines
    table = sklearn_table("breast_cancer")
    order = np.random.default_rng(0).permutation(len(table.y))
    first, everything = order[:250], order

    step("Starting the local twin (moto's server + the template's functions, on 127.0.0.1)")
    with Twin(ROOT / "template.yaml", port=0, api_port=0, echo_handler_output=False) as twin:
        life = Life(twin, say)
        say(f"AWS endpoint {twin.endpoint}   API {twin.api_url}")
        say(f"data bucket {life.data_bucket}   registry bucket {life.registry_bucket}")
        life.subscribe_alerts()
        say("subscribed an SQS queue to AlertsTopic (as your own subscriber would)")

        step("Drop a model spec and a dataset into S3: the upload starts training")
        life.upload_spec(MODEL, SPEC)
        life.upload_dataset(MODEL, "v1.csv", table.csv_bytes(first))
        life.settle()
        say(f"training jobs started: {life.jobs_started(MODEL)}")

        step("Convert: SavedModel → LiteRT, parity checked, registry version 1, promotion gate")
        m1 = life.manifest(MODEL, 1)
        parity = m1.get("parity", {})
        say(
            f"version 1: artifacts {sorted(m1.artifacts)}; held-out AUC {m1.get('metrics', {}).get('auc'):.4f}, accuracy {m1.get('metrics', {}).get('accuracy'):.3f}"
        )
        say(f"parity float32 max |Δ| = {parity.get('float32', {}).get('max_abs_diff')}")
        say(f"verified checksums: {life.verify_artifacts(MODEL, 1)} bytes")
        say(f"production → v{life.production(MODEL)}")

        step("Predict over HTTP (curl would do the same)")
        rows = table.x[order[-3:]]
        answer = life.predict(MODEL, rows.tolist())
        say(
            f"POST {twin.api_url}/models/{MODEL}/predict → version {answer['version']}, "
            f"labels {answer['predictions']}, P(label 1) {[round(p[-1], 3) for p in answer['probabilities']]}"
        )

        step("A second, larger dataset: version 2 and the gate's decision")
        life.upload_dataset(MODEL, "v2.csv", table.csv_bytes(everything))
        life.settle()
        m2 = life.manifest(MODEL, 2)
        say(
            f"version 2: its training job claims held-out AUC {m2.get('metrics', {}).get('auc'):.4f} "
            f"(v1's claimed {m1.get('metrics', {}).get('auc'):.4f}); the gate scores both itself:"
        )
        decision = next(
            (h for h in reversed(life.history(MODEL)) if h.get("kind") == "gate" and h.get("candidate") == 2),
            life.history(MODEL)[-1],
        )
        for line in gate_lines(decision):
            say(line)
        now = life.production(MODEL)
        say(f"production → v{now}")
        took = life.wait_serving(MODEL, now, table.x[order[-1]].tolist())
        if now == 2:
            say(f"predict answers with v{now} after {took:.1f} s (the alias cache's TTL), with no redeploy")
        else:
            say(
                f"predict keeps answering with v{now}: v2's gain is not beyond the noise on these rows "
                f"(`modelops models compare {MODEL} {now} 2` shows the same numbers; promote by hand if you know better)"
            )

        step("Traffic: first like the training data, then with one feature (mean_radius) shifted")
        normal = table.x[order[:150]]
        shifted = table.x[order[150:300]].copy()
        col = table.features.index("mean_radius")
        shifted[:, col] += 3 * table.x[:, col].std()
        n = life.send_traffic(MODEL, normal) + life.send_traffic(MODEL, shifted, batch=5)
        say(f"{n} predict calls; waiting for their captures to land in captures/ (Firehose)")
        life.wait_captured(len(normal) + len(shifted))

        step("Monitor (the hourly schedule, run now) → CloudWatch metrics → drift alarm → alert")
        life.run_monitor()
        alerts = life.alerts()
        drift = [a for a in alerts if a.attributes.get("kind") == "drift"]
        if not drift:
            say(f"no drift alert arrived (got {len(alerts)} other alerts): something is wrong")
            return 1
        for a in alerts:
            say(f"ALERT [{a.attributes.get('severity', '?')}] {a.subject}")
            for line in a.body.splitlines():
                say(f"    {line}")

        if not (script_mode(life) and imported(life)):
            return 1

        step("Summary")
        say(f"model {MODEL}: versions {life.versions(MODEL)}, production v{life.production(MODEL)}")
        say(f"{len(alerts)} alert(s) received on the AlertsTopic subscription, {len(drift)} about drift")
        say(
            f"your own CNNs, in production on the same registry, predict API and fleet page: "
            f"{SCRIPT_MODEL} v{life.production(SCRIPT_MODEL)} (your train.py), "
            f"{IMPORT_MODEL} v{life.production(IMPORT_MODEL)} (`modelops models import`)"
        )
        latest = life.s3().get_object(Bucket=life.registry_bucket, Key=f"monitoring/{MODEL}/latest.json")
        report = json.loads(latest["Body"].read())
        out = OUT
        out.mkdir(parents=True, exist_ok=True)
        for name in ("report.html", "report.json"):
            key = str(report[{"report.html": "report_html", "report.json": "report"}[name]]).split("/", 3)[3]
            (out / name).write_bytes(
                life.s3().get_object(Bucket=life.registry_bucket, Key=key)["Body"].read()
            )
        say(f"monitor report: {report.get('report_html')}")
        say(f"  copied to {out / 'report.html'} (open it in a browser: one chart per drifted feature)")
        say(
            "to explore by hand: `make local` in one shell; in another `source .venv/bin/activate`, "
            '`eval "$(modelops local env)"`, then `modelops models list`, `modelops status`, '
            "`curl -X POST $MODELOPS_API_URL/models/NAME/predict -d ...` (README: Quick tour)"
        )
        # the fleet page, written as files while the twin still holds the registry (docs/ui.md)
        site = Site(
            FleetData(
                life.registry(),
                StackAlarms(twin.client("cloudwatch"), twin.stack_name),
                stack=twin.stack_name,
                source="make demo (the twin is stopped: this is a copy)",
            )
        ).build(out / "site")
    say(f"done in {time.monotonic() - started:.0f} s; the twin is stopped, nothing is left running")
    say("the live fleet page: `make local`, then `modelops ui` in another shell (docs/ui.md)")
    print(f"fleet page: {Path(site['index']).as_uri()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
