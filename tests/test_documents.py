import json

import pytest
from transformers import AutoTokenizer

from infuser.data.documents import (
    CorpusError,
    JsonlDocuments,
    ParquetDocuments,
    TextFolderDocuments,
)
from infuser.data.question_sets import JsonlQuestions, QuestionSetError
from infuser.toy.sources import ToyDocuments, ToyQuestions


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_toy_documents_are_deterministic_and_resumable():
    first = ToyDocuments(seed=3)
    a = first.take(3) + first.take(2)
    second = ToyDocuments(seed=3)
    second.take(3)
    resumed = ToyDocuments(seed=3)
    resumed.load_state_dict(second.state_dict())
    assert [d.text for d in resumed.take(2)] == [d.text for d in a[3:]]


def test_jsonl_errors_name_file_and_line(tmp_path, tokenizer):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"text": "one two three."}\n{not json}\n{"body": "x"}\n\xff\xfe\n{"text": ""}\n')
    with pytest.raises(CorpusError, match=r"docs.jsonl:2: malformed JSON"):
        JsonlDocuments(str(path)).setup(tokenizer)
    source = JsonlDocuments(str(path), skip_invalid=True)
    source.setup(tokenizer)
    assert [d.text for d in source.chunks] == ["one two three."]
    assert sum(source.skipped.values()) == 4
    assert set(source.skipped) >= {"not valid UTF-8", "empty document"}


def test_empty_corpus_is_an_error(tmp_path, tokenizer):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(CorpusError, match="no usable document"):
        JsonlDocuments(str(path)).setup(tokenizer)
    with pytest.raises(CorpusError, match="no such file"):
        JsonlDocuments(str(tmp_path / "missing.jsonl")).setup(tokenizer)


def test_text_folder_chunks_to_budget_and_cycles(tmp_path, tokenizer):
    (tmp_path / "a.txt").write_text(" ".join(f"The clerk wrote {i} plus {i} is {2 * i}." for i in range(30)))
    (tmp_path / "b.md").write_text("A cat slept on the counter.")
    (tmp_path / "ignored.csv").write_text("x")
    source = TextFolderDocuments(str(tmp_path), chunk_tokens=24, seed=1)
    source.setup(tokenizer)
    assert len(source.chunks) > 3
    assert all(len(tokenizer(d.text)["input_ids"]) <= 24 for d in source.chunks)
    taken = source.take(len(source.chunks) + 2)  # wraps around into a reshuffled second pass
    assert {d.id for d in taken[: len(source.chunks)]} == {d.id for d in source.chunks}
    assert source.state_dict()["epoch"] == 1


def test_parquet_documents(tmp_path, tokenizer):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["1 plus 1 is 2.", None]}), tmp_path / "d.parquet")
    with pytest.raises(CorpusError, match=r"d.parquet:row 2"):
        ParquetDocuments(str(tmp_path / "d.parquet"), text_field="content").setup(tokenizer)
    with pytest.raises(CorpusError, match="no column 'text'"):
        ParquetDocuments(str(tmp_path / "d.parquet")).setup(tokenizer)


def test_jsonl_questions_validate_rows(tmp_path):
    path = tmp_path / "target.jsonl"
    good = {"uuid": "u1", "question": "2+2?", "options": ["3", "4", "5", "6"], "answer_letter": "B"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "answer_letter": "H"}) + "\n")
    with pytest.raises(QuestionSetError, match=r"target.jsonl:2: field 'answer_letter'"):
        JsonlQuestions(str(path)).load()
    source = JsonlQuestions(str(path), skip_invalid=True)
    questions = source.load()
    assert [q.answer_letter for q in questions] == ["B"] and source.skipped == 1


def test_toy_question_splits_differ():
    target, heldout = ToyQuestions("target", 20).load(), ToyQuestions("heldout", 20).load()
    assert [q.render() for q in target] != [q.render() for q in heldout]
    assert all(q.options[q.answer_index] for q in target)


def test_toy_documents_judge_a_drafted_golden_answer():
    from infuser.data.questions import MCQuestion

    source = ToyDocuments()
    right = MCQuestion(question="What is the product of 7 and 8?", options=("54", "55", "56", "57"), answer_index=2)
    assert source.golden_is_correct(right) is True
    assert source.golden_is_correct(right.shuffled(__import__("random").Random(0))) is True
    assert source.golden_is_correct(MCQuestion(question="What is the difference of 9 and 4?",
                                               options=("4", "5", "6", "7"), answer_index=0)) is False
    assert source.golden_is_correct(MCQuestion(question="Who wrote it?", options=("a", "b"), answer_index=0)) is None
