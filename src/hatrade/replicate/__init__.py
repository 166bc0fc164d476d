"""``hatrade replicate``: every number and figure of the paper, as a report.

Modules, in the order a run uses them:

- :mod:`~hatrade.replicate.setup`: what a run computes (:class:`Setup`, :class:`ModelSpec`,
  :func:`paper_setup`);
- :mod:`~hatrade.replicate.runner`: :func:`replicate`, which runs the stages and the report;
- :mod:`~hatrade.replicate.context`: what a stage works with, and :class:`ProgressSink`;
- :mod:`~hatrade.replicate.stages`: one module per stage;
- :mod:`~hatrade.replicate.threads`: stages in threads;
- :mod:`~hatrade.replicate.folders`: the output folder policy;
- :mod:`~hatrade.replicate.table`: the reproduction table (published numbers from
  :mod:`hatrade.data.published` next to ours);
- :mod:`~hatrade.replicate.outputs` and :mod:`~hatrade.replicate.report`: the report;
  :mod:`~hatrade.replicate.readme`: the README's "Reproducing the paper" section;
  :mod:`~hatrade.replicate.browser`: the report checked in headless Chromium;
- :mod:`~hatrade.replicate.compilation`: JAX's persistent compilation cache.
"""

from hatrade.replicate.compilation import jax_compilation_cache
from hatrade.replicate.context import ProgressSink
from hatrade.replicate.folders import ReplicateError, check_output_dir
from hatrade.replicate.runner import ReplicateResult, replicate
from hatrade.replicate.setup import QUICK_N_A, ModelSpec, Setup, paper_setup
from hatrade.replicate.stages import STAGE_NAMES
from hatrade.replicate.table import PUBLISHED, reproduction_table

__all__ = [
    "replicate",
    "paper_setup",
    "STAGE_NAMES",
    "ReplicateError",
    "check_output_dir",
    "ReplicateResult",
    "ProgressSink",
    "reproduction_table",
    "PUBLISHED",
    "jax_compilation_cache",
    "QUICK_N_A",
    "ModelSpec",
    "Setup",
]
