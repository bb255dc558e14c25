"""Fault injection: every failure issue 8 names, caused on purpose, and what the trainer does.

* Killed (SIGKILL) during generation, during an update and during a checkpoint write, then resumed
  with ``--ckpt_path last``: the resumed run is bitwise the uninterrupted one (metrics, question
  logs, final weights; CPU, one thread per process).
* Corrupt checkpoints (a flipped byte, a torn file): reported by name, the previous one is used.
* A full disk while writing a checkpoint: a clear error, the previous checkpoint stays good.
* Bad input (corpora, target sets, benchmark files, configurations): an error naming file and
  line (or key) before any model is loaded, or skip-and-count with a warning when asked.
* Hostile Generator/Solver output and non-finite influence scores and losses, through the real
  loop: invalid questions with reasons, excluded numbers with counters and warnings, no crash,
  and nothing non-finite reaches the weights.

The kill tests run ``python -m infuser.cli fit`` in child processes (:mod:`fault_harness`); the
others call :func:`infuser.cli.main` in-process.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from fault_harness import REPO, assert_same_run, fit_args, metric_rows, run_fit, run_fit_and_kill
from safetensors.torch import load_file

from infuser.artifacts import CheckpointError, RunDirectory
from infuser.cli import main
from infuser.config import ConfigurationError
from infuser.data.documents import CorpusError, JsonlDocuments
from infuser.data.question_sets import JsonlQuestions, QuestionSetError
from infuser.eval.data import load_supergpqa
from infuser.eval.sources import RowError
from infuser.influence.optimizer_aware import OptimizerAwareInfluence
from infuser.roles.generator import Generator
from infuser.roles.policy import PolicyRole
from infuser.roles.solver import Solver

REFUSALS = (CheckpointError, ConfigurationError, CorpusError, QuestionSetError)


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one-line error ``infuser`` refuses ``argv`` with.

    Configuration errors are printed by the CLI (exit code 2); errors found inside ``fit`` (data
    files, checkpoints) are raised with the same kind of message (or printed, should the CLI
    catch them too).
    """
    try:
        code = main(argv)
    except REFUSALS as error:
        message = str(error)
    else:
        assert code != 0, "infuser accepted the input"
        # stderr may also hold progress bars (weights loading) from before the failure
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("infuser: error:")]
        assert len(errors) == 1, errors
        message = errors[0]
    assert message and "\n" not in message
    return message


@pytest.fixture
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a model's weights are loaded: bad input must be refused before that."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the bad input was refused")

    monkeypatch.setattr("infuser.roles.policy.load_causal_lm", refuse)


def _checkpoints(run_dir: Path) -> list[str]:
    return [p.name for p in RunDirectory(run_dir).completed_checkpoints()]


# -- killed and resumed -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(learning_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three iterations, uninterrupted."""
    run_dir = tmp_path_factory.mktemp("baseline") / "run"
    run_fit(fit_args(learning_model_dir, run_dir), run_dir.parent / "fit.log")
    trained = [row for row in metric_rows(run_dir) if row["step"] != "0"]
    # The comparison below says something about the optimisers only if both roles stepped.
    assert len(trained) == 3
    assert all(row["generator/update_skipped"] == row["solver/update_skipped"] == "0.0" for row in trained)
    return run_dir


@pytest.mark.slow
def test_killed_during_generation_update_and_checkpoint_write_resumes_bitwise(
        baseline: Path, learning_model_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = fit_args(learning_model_dir, run_dir)
    resume = [*args, "--ckpt_path=last"]

    run_fit_and_kill(args, "generate@2", tmp_path / "1.log")
    assert _checkpoints(run_dir) == ["iter_00001.ckpt"]

    run_fit_and_kill(resume, "solver_update@3", tmp_path / "2.log")
    assert f"resumed from {run_dir / 'checkpoints' / 'iter_00001.ckpt'}" in (tmp_path / "2.log").read_text()
    assert _checkpoints(run_dir) == ["iter_00001.ckpt", "iter_00002.ckpt"]

    # Killed with iteration 3's checkpoint written under its temporary name, not yet committed.
    run_fit_and_kill(resume, "checkpoint_write@3", tmp_path / "3.log")
    assert (run_dir / "checkpoints" / ".iter_00003.ckpt.partial").exists()
    assert _checkpoints(run_dir) == ["iter_00001.ckpt", "iter_00002.ckpt"]

    run_fit(resume, tmp_path / "4.log")
    log = (tmp_path / "4.log").read_text()
    assert ".iter_00003.ckpt.partial: a checkpoint whose writing never finished" in log
    assert f"resumed from {run_dir / 'checkpoints' / 'iter_00002.ckpt'}" in log
    assert_same_run(baseline, run_dir)


@pytest.mark.slow
def test_corrupt_checkpoints_are_named_and_the_previous_good_one_is_used(
        baseline: Path, learning_model_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(baseline, run_dir)
    checkpoints = run_dir / "checkpoints"
    flipped = bytearray((checkpoints / "iter_00003.ckpt").read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # inside a tensor: torch would load it, silently wrong
    (checkpoints / "iter_00003.ckpt").write_bytes(flipped)
    torn = (checkpoints / "iter_00002.ckpt").read_bytes()
    (checkpoints / "iter_00002.ckpt").write_bytes(torn[: len(torn) // 2])
    (checkpoints / "iter_00002.ckpt.sha256").unlink()  # unverifiable: torch's own check must catch it

    run_fit([*fit_args(learning_model_dir, run_dir), "--ckpt_path=last"], tmp_path / "fit.log")
    log = (tmp_path / "fit.log").read_text()
    assert f"checkpoint {checkpoints / 'iter_00003.ckpt'} is corrupt" in log
    assert f"checkpoint {checkpoints / 'iter_00002.ckpt'} cannot be loaded" in log
    assert f"resumed from {checkpoints / 'iter_00001.ckpt'}" in log
    assert_same_run(baseline, run_dir)


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(
        tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    run_dir = tmp_path / "run"
    args = fit_args(tiny_model_dir, run_dir, "--loop.iterations=2", "--heldout_set=null")
    save = L.Fabric.save

    def full_disk(self: L.Fabric, path: Path, state: dict, filter: dict | None = None) -> None:
        if Path(path).name != ".iter_00002.ckpt.partial":
            return save(self, path, state, filter)
        Path(path).write_bytes(b"PK\x03\x04 the first bytes of a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(L.Fabric, "save", full_disk)
    message = refusal(args, capsys)
    assert f"cannot write checkpoint {run_dir / 'checkpoints' / 'iter_00002.ckpt'}" in message
    assert "No space left on device" in message
    assert f"{run_dir / 'checkpoints' / 'iter_00001.ckpt'} is intact" in message
    run = RunDirectory(run_dir)
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["iter_00001.ckpt", "iter_00001.ckpt.sha256"]
    assert run.verify_checkpoint(run.checkpoint_path(1)) is None

    monkeypatch.setattr(L.Fabric, "save", save)  # space freed: the run resumes from iteration 1
    assert main([*args, "--ckpt_path=last"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == 2
    assert [row["step"] for row in metric_rows(run_dir)] == ["0", "1", "2"]


# -- bad input ----------------------------------------------------------------------------------


def _bad_input_args(model_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(REPO / "configs" / "toy.yaml"), f"--generator.model.name_or_path={model_dir}",
            f"--solver.model.name_or_path={model_dir}", "--heldout_set=null", f"--run_dir={run_dir}", *extra]


def _parquet(rows: list[object]):
    def write(path: Path) -> None:
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": rows}), path)
    return write


CORPORA = {
    "malformed line": ("JsonlDocuments", "docs.jsonl", b'{"text": "One fact."}\n{not json}\n',
                       "docs.jsonl:2: malformed JSON"),
    "wrong encoding": ("JsonlDocuments", "docs.jsonl", b'{"text": "One fact."}\n{"text": "caf\xe9"}\n',
                       "docs.jsonl:2: not valid UTF-8"),
    "empty document": ("JsonlDocuments", "docs.jsonl", b'{"text": "  "}\n', "docs.jsonl:1: empty document"),
    "missing field": ("JsonlDocuments", "docs.jsonl", b'{"body": "One fact."}\n',
                      "docs.jsonl:1: field 'text' missing or not a string"),
    "lone surrogate": ("JsonlDocuments", "docs.jsonl", b'{"text": "a \\ud800 b"}\n',
                       "docs.jsonl:1: invalid Unicode"),
    "deep nesting": ("JsonlDocuments", "docs.jsonl", b"[" * 100_000 + b"\n", "docs.jsonl:1: malformed JSON"),
    "empty corpus": ("JsonlDocuments", "docs.jsonl", b"\n\n", "docs.jsonl: the corpus holds no usable document"),
    "text file encoding": ("TextFolderDocuments", "a.txt", "Ein Faß.".encode("latin-1"),
                           "a.txt:byte 6: not valid UTF-8"),
    "parquet null row": ("ParquetDocuments", "d.parquet", _parquet(["One fact.", None]),
                         "d.parquet:row 2: field 'text' missing or not a string"),
    "parquet not parquet": ("ParquetDocuments", "d.parquet", b"PAR1 nothing else",
                            "d.parquet: not a readable parquet file"),
}


@pytest.mark.parametrize("case", CORPORA)
def test_bad_corpus_is_named_by_file_and_line_before_any_model_loads(
        case: str, tiny_model_dir: Path, tmp_path: Path, no_model_loading: None, capsys) -> None:
    class_path, name, content, expected = CORPORA[case]
    path = tmp_path / "corpus" / name
    path.parent.mkdir()
    content(path) if callable(content) else path.write_bytes(content)
    message = refusal(_bad_input_args(tiny_model_dir, tmp_path / "run", f"--documents.class_path={class_path}",
                                      f"--documents.init_args.path={path}"), capsys)
    assert expected in message


def test_missing_corpus_is_refused_as_configuration(tiny_model_dir: Path, tmp_path: Path, no_model_loading: None,
                                                    capsys) -> None:
    message = refusal(_bad_input_args(tiny_model_dir, tmp_path / "run", "--documents.class_path=JsonlDocuments",
                                      f"--documents.init_args.path={tmp_path / 'nowhere.jsonl'}"), capsys)
    assert "nowhere.jsonl: no such file or folder" in message


def test_skipped_bad_input_is_counted_and_reported(tiny_model_dir: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from transformers import AutoTokenizer

    corpus = tmp_path / "docs.jsonl"
    corpus.write_bytes(b'\xef\xbb\xbf{"text": "One fact."}\n{not json}\n{"text": "caf\xe9"}\n{"text": ""}\n'
                       b'{"text": "a \\ud800 b"}\n{"text": "Two facts."}\n')
    source = JsonlDocuments(str(corpus), skip_invalid=True)
    with caplog.at_level(logging.WARNING):
        source.setup(AutoTokenizer.from_pretrained(tiny_model_dir))
    assert [d.text for d in source.chunks] == ["One fact.", "Two facts."]  # a byte-order mark is fine
    assert sum(source.skipped.values()) == 4
    assert f"{corpus}: skipped 4 invalid input(s)" in caplog.text
    assert f"first at {corpus}:2 (malformed JSON" in caplog.text

    target = tmp_path / "target.jsonl"
    good = {"question": "2+2?", "options": ["3", "4", "5", "6"], "answer_letter": "B"}
    target.write_text(json.dumps(good) + "\n" + json.dumps({**good, "options": ["4", "4"]}) + "\n")
    questions = JsonlQuestions(str(target), skip_invalid=True)
    assert len(questions.load()) == 1 and questions.skipped == 1
    assert f"{target}: skipped 1 invalid row(s); the first: {target}:2: field 'options' repeats" in caplog.text


TARGET_SETS = {
    "bad answer letter": ({"answer_letter": "H"}, "target.jsonl:2: field 'answer_letter'"),
    "options not a list": ({"options": "A or B"}, "target.jsonl:2: field 'options'"),
    "empty question": ({"question": " "}, "target.jsonl:2: field 'question'"),
}


@pytest.mark.parametrize("case", [*TARGET_SETS, "wrong encoding"])
def test_bad_target_set_row_names_line_and_field(case: str, tiny_model_dir: Path, tmp_path: Path,
                                                 no_model_loading: None, capsys) -> None:
    good = {"uuid": "q1", "question": "2+2?", "options": ["3", "4", "5", "6"], "answer_letter": "B"}
    path = tmp_path / "target.jsonl"
    if case == "wrong encoding":
        path.write_bytes((json.dumps(good) + "\n").encode() + b'{"question": "caf\xe9"}\n')
        expected = "target.jsonl:2: not valid UTF-8"
    else:
        overrides, expected = TARGET_SETS[case]
        path.write_text(json.dumps(good) + "\n" + json.dumps({**good, **overrides}) + "\n")
    message = refusal(_bad_input_args(tiny_model_dir, tmp_path / "run", "--target_set.class_path=JsonlQuestions",
                                      f"--target_set.init_args.path={path}"), capsys)
    assert expected in message


def test_bad_benchmark_row_names_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bench.jsonl"
    good = {"uuid": "b1", "question": "2+2?", "options": ["3", "4", "5", "6"], "answer_letter": "B"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "uuid": "b2", "answer_letter": "Q"}) + "\n")
    with pytest.raises(RowError, match=r"bench.jsonl: line 2: field 'answer_letter'"):
        load_supergpqa(str(path))


CONFIGURATIONS = {
    "wrong type": ("--loop.iterations=three", "loop.iterations"),
    "unknown key": ("--loop.iteratons=3", "loop.iteratons"),
    "a group of one draft": ("--loop.questions_per_document=1", "loop.questions_per_document"),
    "negative count": ("--loop.keep_checkpoints=-1", "loop.keep_checkpoints"),
    "remote code by the side door": ('--generator.model.extra_kwargs={"trust_remote_code": true}',
                                     "model.extra_kwargs"),
    "resume without a run": ("--ckpt_path=last", "ckpt_path"),
    "resume from nothing": ("--ckpt_path=nowhere.ckpt", "ckpt_path: no such checkpoint"),
}


@pytest.mark.parametrize("case", CONFIGURATIONS)
def test_bad_configuration_is_refused_before_any_model_loads(case: str, tiny_model_dir: Path, tmp_path: Path,
                                                             no_model_loading: None, capsys) -> None:
    argument, key = CONFIGURATIONS[case]
    args = _bad_input_args(tiny_model_dir, tmp_path / "run", argument)
    if case == "resume without a run":
        args = [a for a in args if not a.startswith("--run_dir")]
    assert key in refusal(args, capsys)


# -- hostile model output and non-finite numbers, through the loop ------------------------------

QUESTION = "Question: What is the sum of {a} and {b}?\nA) {s}\nB) {t}\nC) {u}\nD) {v}\nAnswer: A"
ELEVEN_OPTIONS = ("Question: Pick one.\n" + "\n".join(f"{c}) {i}" for i, c in enumerate("ABCDEFGHIJ"))
                  + "\nJ) 10\nAnswer: A")
# Generator rows are prompt-major, two per document: rows 0 and 2 are valid, in two documents.
GENERATOR_OUTPUTS = [
    QUESTION.format(a=2, b=3, s=5, t=6, u=7, v=8),
    "Question: " + "9" * 1_000_000,  # a megabyte
    QUESTION.format(a=4, b=4, s=8, t=9, u=10, v=11),
    "[" * 50_000 + "{" * 50_000,  # deep nesting
    '{"question": "a", "question": "b", "options": [1e999999, ' + "9" * 5000 + '], "answer": NaN}',
    "Question: \u202e\u200b\u0301\U0001f600 \ud800?\u2028A) \x00\nB) \ufffd\nC) \u0000\nD) \x1b[2J\nAnswer: A",
    ELEVEN_OPTIONS,
    QUESTION.format(a=1, b=1, s=2, t=3, u=4, v=5),  # flagged truncated below
]
# Solver rows: five answers per question, one of each letter and one hostile output.
SOLVER_OUTPUTS = ["\\boxed{A}", "\\boxed{B}", "\\boxed{C}", "\\boxed{D}", "\\boxed{" * 200_000]


def _scripted(outputs: list[str], truncated_row: int | None = None):
    """A rollout whose completion texts are ``outputs`` (cycled), whatever the model sampled."""

    def rollout(self: PolicyRole, prompts: list[str], num_samples: int, stream=None, sampling=None,
                prompt_offset=0):
        batch = PolicyRole.rollout(self, prompts, num_samples, stream, sampling, prompt_offset)
        batch.texts = [outputs[row % len(outputs)] for row in range(len(batch))]
        batch.truncated = torch.tensor([row == truncated_row for row in range(len(batch))])
        return batch

    return rollout


def test_hostile_outputs_and_non_finite_numbers_never_reach_the_weights(
        tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(Generator, "rollout", _scripted(GENERATOR_OUTPUTS, truncated_row=7))
    monkeypatch.setattr(Solver, "rollout", _scripted(SOLVER_OUTPUTS))
    score = OptimizerAwareInfluence.score

    def first_score_nan(self, solver, candidates):
        values = score(self, solver, candidates).clone()
        values[0] = float("nan")
        return values

    def nan_loss(self, *args, **kwargs):
        out = PolicyRole.training_step(self, *args, **kwargs)
        out.loss.loss = out.loss.loss * float("nan")
        return out

    monkeypatch.setattr(OptimizerAwareInfluence, "score", first_score_nan)
    monkeypatch.setattr(Solver, "training_step", nan_loss)
    run_dir = tmp_path / "run"
    args = _bad_input_args(tiny_model_dir, run_dir, "--loop.iterations=2", "--loop.documents_per_iteration=4",
                           "--loop.questions_per_document=2", "--loop.answers_per_question=5",
                           "--loop.target_answers_per_question=5", "--loop.eval_samples=1",
                           "--target_set.init_args.size=4")
    with caplog.at_level(logging.WARNING):
        assert main(args) == 0

    records = [json.loads(line) for line in (run_dir / "questions" / "iter_00001.jsonl").read_text().splitlines()]
    assert [r["valid"] for r in records] == [True, False, True, False, False, False, False, False]
    assert all(r["reason"] for r in records if not r["valid"])
    assert (records[1]["reason"], records[6]["reason"], records[7]["reason"]) == \
        ("too_long", "too_many_options", "truncated")
    assert records[0]["influence"] is None and records[0]["reward"] is None  # the NaN score: excluded
    assert isinstance(records[2]["influence"], float)
    for row in metric_rows(run_dir)[1:]:
        assert row["influence/non_finite"] == "1.0" and row["solver/non_finite_steps"] == "1.0"
        assert row["generator/update_skipped"] == "0.0" and float(row["generator/invalid/too_long"]) > 0
    assert "influence scores are not finite" in caplog.text
    assert "solver update dropped 1 optimizer step(s) with a non-finite gradient" in caplog.text

    base = load_file(tiny_model_dir / "model.safetensors")
    solver = load_file(run_dir / "final" / "solver" / "model.safetensors")
    generator = load_file(run_dir / "final" / "generator" / "model.safetensors")
    assert all(solver[k].equal(base[k]) for k in base.keys() & solver.keys())  # every step was NaN: none taken
    assert all(bool(v.isfinite().all()) for v in generator.values())
    assert any(not generator[k].equal(base[k]) for k in base.keys() & generator.keys())  # it did learn


def test_no_usable_signal_skips_both_updates_and_says_so(tiny_model_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """No valid draft: every influence reward is 0 and the Solver has nothing to answer."""
    monkeypatch.setattr(Generator, "rollout", _scripted(["I would rather not."]))
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="infuser.loop"):
        assert main(fit_args(tiny_model_dir, run_dir, "--loop.iterations=1", "--heldout_set=null")) == 0
    row = metric_rows(run_dir)[1]
    assert row["generator/update_skipped"] == row["solver/update_skipped"] == "1.0"
    assert "generator update skipped (no rows with a non-zero advantage)" in caplog.text
    assert "solver update skipped: no valid generated question" in caplog.text


def test_a_run_that_trains_nothing_says_so_and_can_stop(tiny_model_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture,
                                                        capsys: pytest.CaptureFixture) -> None:
    """Nothing valid drafted: after ``idle_iterations_limit`` idle iterations the run logs an error
    that says why; with ``stop_when_idle`` it stops there, its last iteration checkpointed."""
    monkeypatch.setattr(Generator, "rollout", _scripted(["I would rather not."]))
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="infuser.loop"):
        assert main(fit_args(tiny_model_dir, run_dir, "--loop.iterations=3", "--loop.idle_iterations_limit=2",
                             "--heldout_set=null")) == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "nothing has trained for 2 iterations in a row (iterations 1-2)" in errors[0]
    assert "Solver: no valid generated question" in errors[0] and "0 of" in errors[0]
    assert "for 3 iterations in a row (iterations 1-3)" in errors[1]

    stopped = tmp_path / "stopped"
    assert main(fit_args(tiny_model_dir, stopped, "--loop.iterations=3", "--loop.idle_iterations_limit=2",
                         "--loop.stop_when_idle=true", "--heldout_set=null")) == 2
    assert "stopped (loop.stop_when_idle), --ckpt_path last resumes after iteration 2" in capsys.readouterr().err
    assert [path.name for path in RunDirectory(stopped).completed_checkpoints()][-1] == "iter_00002.ckpt"
