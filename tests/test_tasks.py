"""Tasks: the built-in multiple-choice task behind the ``Task`` interface, and ``task:`` in YAML."""

from __future__ import annotations

import random

import pytest
import torch

from infuser import registry
from infuser.cli import main
from infuser.data.questions import InvalidQuestion, MCQuestion, write_question
from infuser.tasks.base import Task
from infuser.tasks.multiple_choice import MultipleChoiceTask

QUESTION = MCQuestion(question="What is 2 + 3?", options=("5", "6", "4", "7"), answer_index=0)


def test_a_valid_draft_is_named_and_shuffled_by_the_given_stream():
    task = MultipleChoiceTask()
    first = task.parse_draft(write_question(QUESTION), "doc-1#q0", random.Random(3))
    again = task.parse_draft(write_question(QUESTION), "doc-1#q0", random.Random(3))
    assert isinstance(first, MCQuestion) and first == again and first.id == "doc-1#q0"
    assert first.options[first.answer_index] == "5" and sorted(first.options) == sorted(QUESTION.options)


def test_an_invalid_draft_keeps_its_reason_and_draws_nothing():
    stream = random.Random(0)
    state = stream.getstate()
    assert MultipleChoiceTask().parse_draft("no question here", "d#q0", stream) == InvalidQuestion(
        "no_question_line", "no question here")
    assert stream.getstate() == state  # the options of the next valid draft are shuffled as before


def test_min_options_is_the_tasks_setting():
    three = write_question(MCQuestion(question="Which?", options=("a", "b", "c"), answer_index=1))
    assert MultipleChoiceTask().parse_draft(three, "x", random.Random(0)).reason == "too_few_options"
    assert isinstance(MultipleChoiceTask(min_options=3).parse_draft(three, "x", random.Random(0)), MCQuestion)
    with pytest.raises(ValueError, match="task: min_options must be at least 2"):
        MultipleChoiceTask(min_options=1)


def test_grading_gives_one_reward_and_one_answer_per_text():
    other = MCQuestion(question="What is 2 * 3?", options=("5", "6"), answer_index=1)
    graded = MultipleChoiceTask().grade([QUESTION, other], ["\\boxed{A}", "\\boxed{B}", "nothing", "6"], 2)
    assert graded.rewards.dtype == torch.float32
    assert graded.rewards.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert graded.answers == ["A", "B", "", "B"]


def test_the_task_is_a_registered_component(capsys):
    assert registry.resolve("task", "multiple_choice") is MultipleChoiceTask
    assert issubclass(MultipleChoiceTask, Task)
    assert main(["list", "task"]) == 0
    assert "multiple_choice" in capsys.readouterr().out


def test_task_and_its_arguments_come_from_yaml(capsys, tmp_path):
    config = tmp_path / "task.yaml"
    config.write_text("task: {class_path: multiple_choice, init_args: {min_options: 3}}\n")
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", "configs/toy.yaml", "--config", str(config), "--print_config"])
    assert exited.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: infuser.tasks.multiple_choice.MultipleChoiceTask" in printed and "min_options: 3" in printed
