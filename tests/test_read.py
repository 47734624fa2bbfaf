"""Ingest: every file type, and every kind of bad input, ends in a verdict with file:line."""

from __future__ import annotations

import csv
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

import curate
from conftest import alpaca, assert_one_verdict_per_line, read_jsonl, varied_rows, write_jsonl
from servers import require


def verdicts(out):
    return read_jsonl(out / "verdicts.jsonl")


def test_jsonl_gz_zst_json_parquet_csv_read_alike(tmp_path):
    rows = varied_rows(5)
    write_jsonl(tmp_path / "a.jsonl", rows)
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "c.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress("".join(json.dumps(r) + "\n" for r in rows).encode())
    )
    (tmp_path / "d.json").write_text(json.dumps(rows, indent=2))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "e.parquet")
    with open(tmp_path / "f.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["instruction", "input", "output"])
        writer.writeheader()
        writer.writerows(rows)
    ids = {}
    for name in ("a.jsonl", "b.jsonl.gz", "c.jsonl.zst", "d.json", "e.parquet", "f.csv"):
        report = curate.scan(tmp_path / name, out=tmp_path / f"out-{name}")
        assert report.rows == 5, name
        ids[name] = [v["content_id"] for v in verdicts(report.out)]
    assert len({tuple(v) for v in ids.values()}) == 1, "every format must give the same content ids"


def test_json_array_lines_point_at_each_element(tmp_path):
    rows = varied_rows(3)
    (tmp_path / "d.json").write_text(json.dumps(rows, indent=2))
    report = curate.scan(tmp_path / "d.json", out=tmp_path / "out")
    lines = [v["line"] for v in verdicts(report.out)]
    text = (tmp_path / "d.json").read_text().splitlines()
    assert all(text[line - 1].strip() == "{" for line in lines)
    assert lines == sorted(lines) and len(set(lines)) == 3


def test_json_array_is_streamed_not_loaded_whole(tmp_path, monkeypatch):
    import curate.read.sources as sources

    monkeypatch.setattr(sources, "CHUNK", 64)  # elements straddle many reads
    rows = varied_rows(40) + [alpaca("long " * 50, "x" * 500)]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    report = curate.scan(tmp_path / "d.json", out=tmp_path / "out")
    assert report.rows == 41 and report.counts["quarantine"] == 0


def test_malformed_line_and_invalid_utf8_are_quarantined_with_file_line(tmp_path):
    rows = varied_rows(4)
    path = write_jsonl(tmp_path / "x.jsonl", rows, {1: b'{"instruction": "oops", ', 3: b'{"instruction": "\xff\xfe"}'})
    report = curate.scan(path, out=tmp_path / "out")
    assert report.rows == 6
    assert report.counts["quarantine"] == 2
    quarantined = read_jsonl(report.out / "quarantine.jsonl")
    assert [(q["line"], q["reason"]) for q in quarantined] == [(2, "input:json"), (5, "input:utf8")]
    assert "oops" in quarantined[0]["raw"] and "\\xff" in quarantined[1]["raw"]
    assert [(u["line"], u["reason"]) for u in report.summary["unreadable"]] == [(2, "input:json"), (5, "input:utf8")]
    assert_one_verdict_per_line(path, report.out)
    assert report.summary["accounting"]["balanced"]


def test_missing_fields_and_a_record_in_another_format(tmp_path):
    rows = varied_rows(3) + [
        {"instruction": "no answer here"},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"instruction": "half of one, half of another", "text": "x"},
    ]
    path = write_jsonl(tmp_path / "x.jsonl", rows)
    report = curate.scan(path, out=tmp_path / "out")
    q = {v["line"]: v for v in verdicts(report.out) if v["verdict"] == "quarantine"}
    assert sorted(q) == [4, 6]
    assert q[4]["reasons"] == ["input:missing-field"]
    assert "output" in q[4]["evidence"]["input:missing-field"]["error"]
    # Shares the file's `instruction` field: not plainly another format, so the file's message.
    assert q[6]["reasons"] == ["input:format"] and "looks like text" in q[6]["evidence"]["input:format"]["error"]
    assert report.summary["sources"][0]["format"] == "alpaca + messages"
    assert_one_verdict_per_line(path, report.out)
    # A forced format reads no record as another one.
    forced = curate.scan(path, out=tmp_path / "forced", format="alpaca")
    q = {v["line"]: v for v in verdicts(forced.out) if v["verdict"] == "quarantine"}
    assert sorted(q) == [4, 5, 6] and "looks like messages" in q[5]["evidence"]["input:format"]["error"]


def test_a_file_of_concatenated_datasets_is_read_record_by_record(tmp_path):
    alpaca_rows = varied_rows(100)
    chat = [
        {
            "messages": [
                {"role": "user", "content": f"Count to {i} in words."},
                {"role": "assistant", "content": "x" * i},
            ]
        }
        for i in range(1, 101)
    ]
    path = write_jsonl(tmp_path / "both.jsonl", alpaca_rows + chat)
    report = curate.scan(path, out=tmp_path / "out")
    assert report.rows == 200 and report.counts["quarantine"] == 0
    assert report.summary["sources"][0]["format"] == "alpaca + messages"
    # Read in worker processes, the formats still reach the report (they travel with the batches).
    assert curate.scan(path, out=tmp_path / "w2", workers=2).summary["sources"][0]["format"] == "alpaca + messages"
    kept = read_jsonl(report.out / "clean.jsonl")
    assert sum("messages" in r for r in kept) == sum(v["verdict"] == "keep" for v in verdicts(report.out)[100:])
    assert_one_verdict_per_line(path, report.out)


def test_a_10mb_field_is_read_and_dropped_as_too_long(tmp_path):
    rows = varied_rows(2) + [alpaca("Summarise this.", "word " * 2_000_000)]
    report = curate.scan(write_jsonl(tmp_path / "big.jsonl", rows), out=tmp_path / "out")
    big = verdicts(report.out)[2]
    assert big["verdict"] == "drop" and "quality:too-long" in big["reasons"]
    assert report.counts == {"keep": 2, "drop": 1, "flag": 0, "quarantine": 0}


def test_empty_file_is_reported_not_fatal(tmp_path, cli):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    result = cli("scan", tmp_path / "empty.jsonl", "-o", tmp_path / "out")
    assert result.exit_code == 0
    assert "empty" in result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["rows"] == 0 and report["sources"][0]["problems"] == ["empty: no records"]


def test_missing_path_exits_2_with_the_path(tmp_path, cli):
    result = cli("scan", tmp_path / "nope.jsonl")
    assert result.exit_code == 2
    assert "nope.jsonl" in result.output and "no such file" in result.output
    assert "Traceback" not in result.output


def test_folder_of_mixed_formats_reads_each_file_in_sorted_order(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "b_alpaca.jsonl", varied_rows(2))
    write_jsonl(
        folder / "a_chat.jsonl",
        [{"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Teal."}]}],
    )
    (folder / "c_sharegpt.json").write_text(
        json.dumps([{"conversations": [{"from": "human", "value": "Say hi"}, {"from": "gpt", "value": "Hi there!"}]}])
    )
    (folder / "notes.txt").write_text("ignored")
    report = curate.scan(folder, out=tmp_path / "out")
    formats = {s["source"].rsplit("/", 1)[1]: s["format"] for s in report.summary["sources"]}
    assert formats == {"a_chat.jsonl": "messages", "b_alpaca.jsonl": "alpaca", "c_sharegpt.json": "sharegpt"}
    assert [v["source"].rsplit("/", 1)[1] for v in verdicts(report.out)] == [
        "a_chat.jsonl",
        "b_alpaca.jsonl",
        "b_alpaca.jsonl",
        "c_sharegpt.json",
    ]


def test_truncated_gzip_keeps_what_was_read_and_quarantines_the_break(tmp_path):
    rows = varied_rows(200)
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
    (tmp_path / "t.jsonl.gz").write_bytes(data[: len(data) // 2])
    report = curate.scan(tmp_path / "t.jsonl.gz", out=tmp_path / "out")
    vs = verdicts(report.out)
    broken = [v for v in vs if v["reasons"] == ["input:truncated"]]
    assert len(broken) == 1 and broken[0]["verdict"] == "quarantine"
    assert 0 < report.counts["keep"] < 200
    assert "truncated" in report.summary["sources"][0]["problems"][0]


def test_glob_and_stdin(tmp_path, cli):
    write_jsonl(tmp_path / "one.jsonl", varied_rows(2, seed=1))
    write_jsonl(tmp_path / "two.jsonl", varied_rows(3, seed=2))
    report = curate.scan(str(tmp_path / "*.jsonl"), out=tmp_path / "out")
    assert report.rows == 5
    stdin = "".join(json.dumps(r) + "\n" for r in varied_rows(4))
    result = cli("scan", "-", "-o", tmp_path / "out2", "--json", input=stdin)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 4


def test_saved_datasets_dataset(tmp_path):
    datasets = require("datasets")
    datasets.Dataset.from_list(varied_rows(6)).save_to_disk(str(tmp_path / "ds"))
    report = curate.scan(tmp_path / "ds", out=tmp_path / "out")
    assert report.rows == 6 and report.summary["sources"][0]["format"] == "alpaca"


def test_binary_garbage_file_never_crashes(tmp_path):
    import random

    blob = bytes(random.Random(0).randrange(256) for _ in range(20_000))
    (tmp_path / "junk.jsonl").write_bytes(blob)
    report = curate.scan(tmp_path / "junk.jsonl", out=tmp_path / "out")
    assert report.rows > 0 and report.counts["quarantine"] == report.rows
    assert_one_verdict_per_line(tmp_path / "junk.jsonl", report.out)


def test_a_byte_order_mark_is_not_part_of_the_first_record(tmp_path):
    rows = varied_rows(2)
    bom = b"\xef\xbb\xbf"
    (tmp_path / "a.jsonl").write_bytes(bom + b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    (tmp_path / "b.json").write_bytes(bom + json.dumps(rows).encode())
    (tmp_path / "c.csv").write_bytes(bom + b"instruction,input,output\nSay hi,,Hi there friend.\n")
    for name in ("a.jsonl", "b.json", "c.csv"):
        report = curate.scan(tmp_path / name, out=tmp_path / f"out-{name}")
        assert report.counts["quarantine"] == 0 and report.rows >= 1, name


def test_a_line_over_the_record_limit_is_quarantined_unread(tmp_path, monkeypatch):
    import curate.read.sources as sources

    monkeypatch.setattr(sources, "MAX_RECORD_BYTES", 1000)
    monkeypatch.setattr(sources, "CHUNK", 64)
    rows = varied_rows(3)
    path = write_jsonl(tmp_path / "x.jsonl", rows, {1: b'{"instruction": "' + b"z" * 5000 + b'", "output": "y"}'})
    report = curate.scan(path, out=tmp_path / "out")
    vs = verdicts(report.out)
    assert [v["line"] for v in vs] == [1, 2, 3, 4]
    assert vs[1]["reasons"] == ["input:too-large"] and vs[1]["verdict"] == "quarantine"
    assert [v["verdict"] for v in vs[::2]] == ["keep", "keep"] and vs[3]["verdict"] == "keep"


def test_json_lines_in_a_json_file_with_a_long_first_line(tmp_path):
    rows = [alpaca("Summarise: " + "word " * 2000, "A summary.")] + varied_rows(3)
    write_jsonl(tmp_path / "lines.json", rows)  # .json name, JSON Lines content
    (tmp_path / "one.json").write_text(json.dumps(varied_rows(1)[0], indent=2))
    report = curate.scan(tmp_path / "lines.json", out=tmp_path / "out")
    assert report.rows == 4 and report.counts["quarantine"] == 0
    assert [v["line"] for v in verdicts(report.out)] == [1, 2, 3, 4]
    assert curate.scan(tmp_path / "one.json", out=tmp_path / "out2").counts["keep"] == 1
