"""Chat templates: how a prompt reaches an instruction-tuned model, in training and in evaluation.

An instruct model was tuned on prompts wrapped in its tokenizer's chat template (a user turn, then
the assistant's header) and on answers that end with the template's end-of-turn token. Trained on
raw text it learns from prompts it was never tuned for, and it may never stop. With the template
on (``model.chat_template``), a role's prompts are rendered through it, sampling stops at the
end-of-turn token, and the rendered text is what is tokenised (``add_special_tokens=False``, so
the template's own special tokens are not doubled): the log-probabilities of the update are then
those of exactly the tokens the model saw, and the loss covers the completion alone.

``infuser eval`` renders its prompts with :func:`render_prompt` too, so a model is trained and
evaluated on the same format.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from infuser.config import ConfigurationError, SamplingConfig

ChatTemplateSetting = bool | Literal["auto"]

# Stands for the assistant's answer when the template is rendered to find what follows an answer.
_ANSWER_MARK = "INFUSERANSWERMARK"


def has_chat_template(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(prompt: str, tokenizer: Any = None, use_chat_template: bool = True,
                  system_prompt: str | None = None) -> str:
    """The text actually fed to the model.

    With ``use_chat_template`` and a tokenizer that has a chat template, the prompt becomes one
    user turn (after an optional system turn) with the generation prompt appended; otherwise it is
    returned unchanged (base models, or templates turned off in the config), after the system
    prompt and a blank line when there is one.
    """
    if not use_chat_template or tokenizer is None or not has_chat_template(tokenizer):
        return prompt if system_prompt is None else f"{system_prompt}\n\n{prompt}"
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": prompt})
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(rendered, str):  # pragma: no cover - tokenize=False returns text
        raise TypeError("apply_chat_template(tokenize=False) did not return a string")
    return rendered


def end_of_turn_id(tokenizer: Any) -> int | None:
    """The special token the chat template puts right after an assistant's answer (``<|im_end|>``,
    ``<|eot_id|>``, ``<end_of_turn>``...), or ``None`` when what follows is no special token."""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": _ANSWER_MARK}], tokenize=False)
    if _ANSWER_MARK not in rendered:
        return None
    after = tokenizer(rendered.split(_ANSWER_MARK, 1)[1], add_special_tokens=False)["input_ids"]
    if not after:
        return None
    special = set(tokenizer.all_special_ids) | {index for index, token in tokenizer.added_tokens_decoder.items()
                                                if token.special}
    return after[0] if after[0] in special else None


@dataclass(frozen=True)
class ChatFormat:
    """How one role's prompts are rendered and where its completions end.

    Attributes:
        tokenizer: the role's tokenizer.
        enabled: whether prompts go through the tokenizer's chat template.
        system_prompt: an optional system turn (a first paragraph without the template).
        end_of_turn: the template's end-of-turn token, which ends a completion (``None``: the
            tokenizer's end-of-text alone, as without the template).
    """

    tokenizer: Any
    enabled: bool = False
    system_prompt: str | None = None
    end_of_turn: int | None = None

    @classmethod
    def of(cls, tokenizer: Any, setting: ChatTemplateSetting, system_prompt: str | None, key: str) -> ChatFormat:
        """The format ``setting`` asks for (``key`` names it in errors): ``auto`` uses the template
        when the tokenizer has one; ``true`` refuses a tokenizer without one."""
        available = has_chat_template(tokenizer)
        if setting is True and not available:
            raise ConfigurationError(f"{key}: true, but the tokenizer of {tokenizer.name_or_path!r} has no chat "
                                     "template; use auto (the template when there is one) or false")
        enabled = available if setting == "auto" else bool(setting)
        return cls(tokenizer, enabled, system_prompt, end_of_turn_id(tokenizer) if enabled else None)

    def render(self, prompt: str) -> str:
        """``prompt`` as the model sees it."""
        return render_prompt(prompt, self.tokenizer, self.enabled, self.system_prompt)

    def sampling(self, sampling: SamplingConfig) -> SamplingConfig:
        """``sampling`` that also stops at the end-of-turn token."""
        if self.end_of_turn is None or self.end_of_turn in sampling.stop_token_ids:
            return sampling
        return dataclasses.replace(sampling, stop_token_ids=[*sampling.stop_token_ids, self.end_of_turn])

    @property
    def end_id(self) -> int:
        """The token that ends a written completion: end-of-turn with the template, else end-of-text."""
        return self.end_of_turn if self.end_of_turn is not None else self.tokenizer.eos_token_id
