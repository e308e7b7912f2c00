"""docs/scale.md stays tied to what it is computed from: the bench rows it cites exist, and the chunk
limits and map concurrency it assumes are the code's and the state machine's."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from modelops.stages.monitor import fanout

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "scale.md"
BENCH = ROOT / "benchmarks"
CITED = re.compile(r"`((?:fanout|predict|monitor)_[a-z0-9_]+)`")


def _bench_rows() -> set[str]:
    """Every row name a benchmark module can return."""
    names = {
        m.group(1)
        for path in BENCH.glob("bench_*.py")
        for m in re.finditer(r'"name": "([a-z0-9_]+)"', path.read_text(encoding="utf-8"))
    }
    sys.path.insert(0, str(BENCH))
    try:
        import bench_fanout
    finally:
        sys.path.remove(str(BENCH))
    return names | {f"fanout_twin_wall_{n}" for n in bench_fanout.CHUNKS}


def test_every_bench_row_the_scale_doc_cites_exists() -> None:
    cited = set(CITED.findall(DOC.read_text(encoding="utf-8")))
    assert {"fanout_chunk_mb_per_s", "fanout_chunk_lines_per_s", "fanout_twin_child_fixed_ms"} <= cited
    assert cited - _bench_rows() == set()


def test_the_scale_doc_assumes_the_code_chunk_limits_and_map_concurrency() -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    definition = json.loads((ROOT / "statemachines" / "monitor.asl.json").read_text(encoding="utf-8"))
    chunks = definition["States"]["Chunks"]
    assert f"`MONITOR_CHUNK_BYTES`, {fanout.MAX_CHUNK_BYTES:,})" in text
    assert f"{fanout.MAX_CHUNK_OBJECTS:,} objects" in text
    assert f"`MaxConcurrency` is {chunks['MaxConcurrency']}" in text
    assert f"children are `{chunks['ItemProcessor']['ProcessorConfig']['ExecutionType']}`" in text
