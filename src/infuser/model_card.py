"""The model card (``README.md``) of each ``final/<role>`` folder ``infuser fit`` exports.

A folder of weights says nothing of how it was made; the Hugging Face Hub, ``huggingface_hub``'s
``ModelCard`` and peft all read a ``README.md`` beside the weights. The card says what the folder
is (base model, method, role), the configuration's key settings, the run's summary figures and how
to load it, so a folder copied out of its run (or pushed to the Hub) still explains itself. peft's
``save_pretrained`` writes a template card of its own for an adapter; this one replaces it.

Torch-free; written by rank 0 after the export.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from infuser.artifacts import atomic_path
from infuser.config import LoopConfig, RoleConfig
from infuser.model_config import BUILTIN_PREFIX

Role = Literal["generator", "solver"]

# What each role does in INFUSER (method.md's words), for the card's first paragraph.
_ROLE_TEXT: dict[str, str] = {
    "generator": ("the **Generator**: it reads a document and drafts a multiple-choice question about it. It was "
                  "trained with policy gradients (DuGRPO-style advantages over the drafts of one document) on "
                  "the reward `{reward}`{influence}."),
    "solver": ("the **Solver**: it answers multiple-choice questions with the option in `\\boxed{{}}`. It was "
               "trained with policy gradients ({advantage} advantages) on the Generator's questions whose pass "
               "rate lay strictly between 0 and 1, graded against {labels}."),
}

# Summary figures shown in the card, in this order, with their labels.
_FIGURES = (("target_accuracy", "target accuracy"), ("heldout_accuracy", "held-out accuracy"),
            ("target_exact", "target exact probability"), ("heldout_exact", "held-out exact probability"))


@dataclass(frozen=True)
class RunFacts:
    """What the cards of one run share: the components' names, the schedule and the summary.

    Attributes:
        reward: the Generator's reward (registered or class name).
        influence: the influence estimator's name, or ``None`` when the reward reads no influence.
        loop: the schedule.
        share_base: whether both roles were adapters on one base.
        seed: the run's seed.
        summary: ``summary.json``'s content (figures at the start and the end, iterations, seconds).
    """

    reward: str
    influence: str | None
    loop: LoopConfig
    share_base: bool
    seed: int
    summary: dict[str, Any]


@dataclass(frozen=True)
class ModelCard:
    """The card of one exported role."""

    role: Role
    config: RoleConfig
    run: RunFacts

    @property
    def adapter(self) -> bool:
        """Whether the folder holds a LoRA adapter (peft) rather than a whole model."""
        return self.config.model.lora is not None

    def metadata(self) -> dict[str, Any]:
        """The card's YAML header (the Hub's model-card metadata)."""
        base = self.config.model.name_or_path
        meta: dict[str, Any] = {"library_name": "peft" if self.adapter else "transformers",
                                "tags": ["infuser", "grpo", "self-evolution", self.role]}
        if not base.startswith(BUILTIN_PREFIX) and not Path(base).exists():  # a Hub id, not a local folder
            meta["base_model"] = base
        return meta

    def settings(self) -> dict[str, Any]:
        """The configuration keys that say how this role was trained, by their ``infuser fit`` names."""
        model, role, loop = self.config.model, self.role, self.run.loop
        rows: dict[str, Any] = {f"{role}.model.name_or_path": model.name_or_path,
                                f"{role}.model.dtype": model.dtype}
        if model.lora is not None:
            rows[f"{role}.model.lora"] = f"r={model.lora.r}, alpha={model.lora.alpha}, " \
                                         f"target_modules={model.lora.target_modules}"
        if model.quantization is not None:
            rows[f"{role}.model.quantization"] = model.quantization.quant_type
        rows |= {f"{role}.optimizer.lr": self.config.optimizer.lr,
                 f"{role}.update.loss.loss_type": self.config.update.loss.loss_type,
                 f"{role}.advantage": type(self.config.advantage).__name__,
                 "generator_reward": self.run.reward}
        if self.run.influence is not None:
            rows["influence"] = self.run.influence
        rows |= {"loop.iterations": loop.iterations, "loop.documents_per_iteration": loop.documents_per_iteration,
                 "loop.questions_per_document": loop.questions_per_document,
                 "loop.answers_per_question": loop.answers_per_question, "loop.solver_data": loop.solver_data,
                 "loop.solver_labels": loop.solver_labels, "loop.freeze_generator": loop.freeze_generator,
                 "share_base": self.run.share_base, "seed": self.run.seed}
        return rows

    def render(self) -> str:
        summary = self.run.summary
        role_text = _ROLE_TEXT[self.role].format(
            reward=self.run.reward, advantage=type(self.config.advantage).__name__,
            influence=f" (influence on a target set by `{self.run.influence}`)" if self.run.influence else "",
            labels="the Solver's own majority answers" if self.run.loop.solver_labels == "majority_vote"
            else "the golden answers")
        lines = ["---", yaml.safe_dump(self.metadata(), sort_keys=False).rstrip(), "---", "",
                 f"# infuser {self.role}: {self.config.model.name_or_path}", "",
                 f"{'A LoRA adapter on' if self.adapter else 'A fine-tune of'} `{self.config.model.name_or_path}`, "
                 "trained by `infuser fit` (INFUSER: influence-guided self-evolution, a "
                 "Generator and a Solver co-trained from one base). This folder is " + role_text, "",
                 "## Configuration", "", "| key | value |", "|---|---|"]
        lines += [f"| `{key}` | `{value}` |" for key, value in self.settings().items()]
        lines += ["", "The run folder's `config.yaml` (when made by `infuser fit`) holds every key.", "",
                  f"## Results (the Solver, after {summary['iterations']} iterations)", "",
                  "| metric | start | end |", "|---|---|---|"]
        lines += [f"| {label} | {_figure(summary.get(f'{key}_start'))} | {_figure(summary.get(f'{key}_end'))} |"
                  for key, label in _FIGURES if summary.get(f"{key}_start") is not None]
        lines += ["", f"Wall time: {summary['seconds_total']:.0f} s.", "", "## Loading", "", "```python"]
        lines += self._loading()
        lines += ["```", ""]
        return "\n".join(lines)

    def _loading(self) -> list[str]:
        if not self.adapter:
            lines = ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                     'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")']
            evaluate = "--model.name_or_path path/to/this/folder"
        else:
            lines = ["from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer", "",
                     "# loads the base named in adapter_config.json, then this adapter on it",
                     'model = AutoPeftModelForCausalLM.from_pretrained("path/to/this/folder")']
            evaluate = f"--model.name_or_path {self.config.model.name_or_path} --model.adapter path/to/this/folder"
        return [*lines, 'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")', "```", "",
                "On the benchmarks (OlympiadBench, SuperGPQA):", "", "```",
                f"infuser eval --config configs/eval_model.yaml {evaluate}"]

    def write(self, directory: Path) -> None:
        with atomic_path(directory / "README.md") as temporary:
            temporary.write_text(self.render(), encoding="utf-8")


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_model_cards(final: Path, roles: dict[Role, RoleConfig], run: RunFacts) -> None:
    """``final/<role>/README.md`` for each exported role."""
    for role, config in roles.items():
        ModelCard(role, config, run).write(final / role)
