"""bench.index: every size is built, reopened and timed in one run, and the growth figures compare them."""

from __future__ import annotations

import json

import pytest

from bench import index as bench_index


@pytest.mark.parametrize("engine", ["ivf", "annoy"])
def test_sizes_report_their_figures_and_growth(engine: str, tmp_path, capsys) -> None:
    assert bench_index.main(["--sizes", "1000,4000", "--dim", "32", "--queries", "20", "--rounds", "1",
                             "--cluster-size", "50", "--no-peer", "--engine", engine, "--json",
                             "--tmp", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [c["n"] for c in result["cases"]] == [1000, 4000] and result["sizes"] == [1000, 4000]
    for case in result["cases"]:
        assert case["engine"] == engine and case["segments"] == 1
        assert case["qps"] > 0 and case["exact_qps"] > 0 and case["startup_seconds"] >= 0
        assert case["index_bytes"] > case["raw_vector_bytes"]  # the vector file plus the engine's index
        assert case["recall_at_10"] >= 0.9
    assert result["qps_ratio_4x"] == round(result["cases"][1]["qps"] / result["cases"][0]["qps"], 3)
    assert result["bytes_per_raw_byte"] == max(c["bytes_per_raw_byte"] for c in result["cases"])
    assert list(tmp_path.iterdir()) == []  # every shard's directory is removed
