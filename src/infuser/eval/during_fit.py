"""``loop.eval_benchmarks``: ``infuser eval``'s harness on the Solver while ``infuser fit`` runs.

A real run is judged on the real benchmarks (OlympiadBench, SuperGPQA), not on the target set
alone; scoring the exported model after the run says only where it ended. This scores the live
Solver every ``every`` iterations and after the last one with exactly what ``infuser eval`` does:
the same loading and exclusions (:func:`~infuser.eval.items.load_benchmark`), prompts rendered as
the Solver's prompts are (its ``model.chat_template``), and the same judge and avg@k summary
(:func:`~infuser.eval.run.judge_outputs`). Sampling goes through the Solver's own
:meth:`~infuser.roles.policy.PolicyRole.sample`, so under several processes each samples its shard
and every process judges every output (the metrics are then alike everywhere).
"""

from __future__ import annotations

from infuser.config import BenchmarkEvalConfig, ConfigurationError
from infuser.eval.items import LoadedBenchmark, load_benchmark
from infuser.eval.predictions import model_outputs
from infuser.eval.run import judge_outputs
from infuser.eval.score import JudgeConfig, Scorer
from infuser.eval.sources import DatasetError, RowError
from infuser.lazy import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from infuser.roles.solver import Solver


class BenchmarkEvaluation:
    """The benchmarks of ``loop.eval_benchmarks``, loaded once, and the Solver's scores on them.

    Loading happens here, in ``fit`` before any model loads, so a missing or malformed benchmark
    file stops the run in seconds.
    """

    def __init__(self, config: BenchmarkEvalConfig, judge: JudgeConfig | None = None) -> None:
        self.config = config
        self.judge = judge or JudgeConfig()
        self.loaded: list[LoadedBenchmark] = []
        for index, benchmark in enumerate(config.benchmarks):
            try:
                self.loaded.append(load_benchmark(benchmark))
            except (DatasetError, RowError, ValueError) as error:
                raise ConfigurationError(f"loop.eval_benchmarks.benchmarks[{index}] ({benchmark.key}): {error}"
                                         ) from error

    def __call__(self, solver: Solver, stream: torch.Generator) -> dict[str, float]:
        """``eval/<benchmark>/accuracy`` (avg@k over the benchmark's items) of ``solver`` now."""
        k = self.config.sampling.num_samples
        sampling = self.config.sampling.engine(batch_size=self.config.batch_size * k)
        rendered = [solver.chat.render(item.prompt) for benchmark in self.loaded for item in benchmark.items]
        texts = solver.sample(rendered, k, stream, sampling).texts
        outputs = [texts[index * k : (index + 1) * k] for index in range(len(rendered))]
        with Scorer(self.judge) as scorer:
            summaries, _ = judge_outputs(scorer, self.loaded, model_outputs(self.loaded, rendered, outputs))
        return {f"eval/{summary.name}/accuracy": summary.accuracy for summary in summaries}
