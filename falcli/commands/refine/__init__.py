"""`fal refine`: test-time feedback on samples that already exist (methods.md §0, "Test-time refinement").

The FAL loop is unrolled from a given sample: step 1 *is* the sample, D scores it, and each further step is one
pass of G reading D's map of the previous step (`feedback.unroll(..., initial=sample)`). G's own input is what
made the sample: the condition image (translation), or a latent code — the one `fal sample` kept, or, for
samples without one, a latent found by inversion (optimise z so that G's first pass reproduces the sample, the
Image2StyleGAN idea) before feeding back. The reference methods (`--method`, falcli/methods/refinement.py) refine
with D alone.

Writes into --out (a new folder; written to a temporary one, then renamed): step-t/ with each step's samples
in the input's file format, heatmaps/step-t/ with D's map of each sample, a labelled grid picture (toy: a scatter
figure), latents.npy (unconditional tasks) and refine.json with D's mean score and the task's metrics per step.

The parts: run.py (the command end to end), sources.py (what is refined; inversion), runners.py (each method),
metrics.py (the task's own evaluation of each step), writing.py (files and pictures), common.py (options).
"""
from falcli.commands.refine.common import INVERT_STREAM, RefineOptions
from falcli.commands.refine.run import claim_numbered, refine, run_folder

__all__ = ["INVERT_STREAM", "RefineOptions", "claim_numbered", "refine", "run_folder"]
