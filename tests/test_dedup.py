"""Exact and near duplicates: whole-record, deterministic representatives, signals kept."""

from __future__ import annotations

import numpy as np

import curate
from conftest import alpaca, read_jsonl, varied_rows, write_jsonl
from curate.dedup import UnionFind, band_hashes, candidate_pairs, shingle_set, signatures, star_groups


def scan_rows(tmp_path, rows, **kw):
    report = curate.scan(write_jsonl(tmp_path / "in.jsonl", rows), out=tmp_path / "out", **kw)
    return report, read_jsonl(report.out / "verdicts.jsonl")


def test_exact_duplicates_keep_the_first_row_that_passes_the_filters(tmp_path):
    base = varied_rows(3)
    twin = dict(base[0])
    empty = alpaca("Write a limerick about tea.", "")
    rows = [empty, dict(empty), *base, twin]
    report, vs = scan_rows(tmp_path, rows)
    assert vs[5]["verdict"] == "drop" and vs[5]["reasons"] == ["dup:exact"]
    assert vs[5]["evidence"]["dup:exact"]["kept_row"] == 2
    assert vs[2]["verdict"] == "keep"
    # both empty rows fail a filter: the group keeps its first row, the other is also a duplicate
    assert vs[0]["reasons"] == ["quality:empty-turn"]
    assert set(vs[1]["reasons"]) == {"quality:empty-turn", "dup:exact"}


def test_a_filtered_row_never_hides_its_group(tmp_path):
    text = "The mitochondria is the powerhouse of the cell, producing most of its chemical energy."
    flagged_first = alpaca("Tell me about mitochondria.\u200b", text)
    clean = alpaca("Tell me about mitochondria.", text)
    rows = [flagged_first, *varied_rows(3), clean, clean]
    report, vs = scan_rows(tmp_path, rows)
    assert vs[0]["verdict"] == "flag"  # different content id: the zero-width space counts
    assert vs[4]["verdict"] == "keep" and vs[5]["reasons"] == ["dup:exact"]


def test_near_duplicates_are_found_and_grouped(tmp_path):
    rows = varied_rows(20)
    long_answer = (
        "Photosynthesis converts light energy into chemical energy stored in glucose. It takes place "
        "in the chloroplasts of plant cells, uses water and carbon dioxide, and releases oxygen as a "
        "by-product. The light reactions make ATP and NADPH, and the Calvin cycle fixes carbon. Without it "
        "there would be almost no oxygen in the air, and nearly every food chain on Earth starts with it."
    )
    rows.insert(3, alpaca("Explain photosynthesis.", long_answer))
    rows.append(alpaca("Explain photosynthesis.", long_answer.replace("glucose", "sugar")))
    report, vs = scan_rows(tmp_path, rows)
    assert vs[-1]["reasons"] == ["dup:near"]
    assert vs[-1]["evidence"]["dup:near"]["kept_row"] == 3
    assert report.summary["dedup"]["near"]["groups"] == 1
    group = report.summary["dedup"]["groups"][0]
    assert group["kind"] == "near" and group["kept"]["row"] == 3 and group["size"] == 2


def test_same_prompt_different_response_is_a_signal_not_a_duplicate(tmp_path):
    rows = varied_rows(4) + [
        alpaca("What is 2+2?", "4"),
        alpaca("What is 2+2?", "Four, obviously."),
        alpaca("Name a fruit.", "You are stupid!"),
        alpaca("Name a tree.", "You are stupid!"),
    ]
    report, vs = scan_rows(tmp_path, rows)
    assert all(v["verdict"] == "keep" for v in vs)
    assert vs[4]["evidence"]["signals"]["same_prompt"] == {"rows": 2, "distinct": 2}
    assert vs[6]["evidence"]["signals"]["same_response"] == {"rows": 2, "distinct": 2}
    assert report.summary["signals"]["same_response"]["groups"] == 1


def test_against_an_eval_set_marks_contamination(tmp_path):
    eval_path = write_jsonl(
        tmp_path / "eval.jsonl",
        [
            {"question": "What is the boiling point of water at sea level in degrees Celsius?"},
            {
                "question": "Who wrote the novel Pride and Prejudice, in which year was it first published, and which "
                "publisher in London brought out the first edition of the book?"
            },
        ],
    )
    rows = varied_rows(5) + [
        alpaca("What is the boiling point of water at sea level in degrees Celsius?", "100 degrees."),
        alpaca(
            "Who wrote the novel Pride and Prejudice, in what year was it first published, and which "
            "publisher in London brought out the first edition of the book?",
            "Jane Austen, 1813.",
        ),
    ]
    report, vs = scan_rows(tmp_path, rows, against=[str(eval_path)])
    assert vs[5]["reasons"] == ["dup:eval"] and vs[5]["evidence"]["dup:eval"]["similarity"] == 1.0
    assert vs[6]["reasons"] == ["dup:eval"] and 0.7 <= vs[6]["evidence"]["dup:eval"]["similarity"] < 1.0
    assert vs[5]["evidence"]["dup:eval"]["eval"].endswith("eval.jsonl:1")
    assert [v["verdict"] for v in vs[:5]] == ["keep"] * 5


def test_signatures_estimate_jaccard_and_bands_catch_close_pairs():
    words = [f"w{i}" for i in range(400)]
    a = " ".join(words)
    b = " ".join(words[:380] + [f"x{i}" for i in range(20)])
    c = " ".join(f"z{i}" for i in range(400))
    sig = signatures([a, b, c, ""], 5, 120)
    exact = len(shingle_set(a, 5) & shingle_set(b, 5)) / len(shingle_set(a, 5) | shingle_set(b, 5))
    assert abs((sig[0] == sig[1]).mean() - exact) < 0.1
    assert (sig[0] == sig[2]).mean() < 0.05
    pairs = candidate_pairs(band_hashes(sig[:3], 20, 6), np.arange(3))
    assert pairs.tolist() == [[0, 1]]


def test_candidate_pairs_for_buckets_of_every_size():
    bands = np.array([[1], [1], [2], [3], [3], [3], [4]] + [[9]] * 20, dtype=np.uint64)
    keys = np.arange(len(bands)) * 10
    pairs = {tuple(p) for p in candidate_pairs(bands, keys).tolist()}
    assert {(0, 10), (30, 40), (30, 50), (40, 50)} <= pairs
    big = [k for k in range(70, 270, 10)]
    assert all((70, k) in pairs for k in big[1:])  # a large bucket is linked star + chain
    assert not any(60 in p for p in pairs)


def test_cjk_text_shingles_per_character():
    assert len(shingle_set("细胞理论是生物科学的一个理论", 5)) == 10


def test_star_groups_never_chain():
    # 1~2 and 2~3, but 1 and 3 are not alike: 3 must not be dropped as a copy of 1
    groups = star_groups([(1, 2, 0.9), (2, 3, 0.85)], pick=min)
    assert groups == [(1, {2: 0.9})]
    groups = star_groups([(1, 2, 0.9), (1, 3, 0.8), (4, 5, 0.95)], pick=min)
    assert sorted(groups) == [(1, {2: 0.9, 3: 0.8}), (4, {5: 0.95})]


def test_union_find_groups():
    uf = UnionFind()
    for a, b in [(1, 2), (3, 4), (2, 5)]:
        uf.union(a, b)
    assert sorted(uf.groups()) == [[1, 2, 5], [3, 4]]


def test_token_hashes_do_not_depend_on_how_the_texts_are_grouped(monkeypatch):
    """Big batches are hashed in groups (small power tables); a word's hash must not change."""
    import random

    from curate import tokens

    rng = random.Random(3)
    texts = ["".join(rng.choice("ab cd éf 中文 x\u200b.") for _ in range(rng.randint(0, 200))) for _ in range(3000)]
    whole = tokens.token_hashes(texts)
    monkeypatch.setattr(tokens, "GROUP_BYTES", 700)
    monkeypatch.setattr(tokens, "POWERS", {})
    grouped = tokens.token_hashes(texts)
    assert np.array_equal(whole[0], grouped[0]) and np.array_equal(whole[1], grouped[1])
    assert tokens.POWERS["b"].size <= 2 * 700  # the kept table is bounded by the group size
    # One text longer than a group still hashes the same, without growing the kept table.
    long = [" ".join(texts)]
    assert np.array_equal(tokens.token_hashes(long)[0], whole[0])
    assert tokens.POWERS["b"].size <= 2 * 700
