"""Recipes as typed, frozen dataclasses, with strict keys and safe coercions; where the shipped recipes are.

A recipe says *what* is trained (task, data, model, feedback, loss, schedule, seed); CLI flags say where and
how it runs. The task owns the `data:` and `model:` sections (its own dataclasses); the rest is shared.
This module is a leaf (no torch, nothing of falcli but errors): reading a recipe file, `--set` overrides and
the task lookup are falcli/resolve.py's.
It is ~400 lines on purpose: every shared recipe key, its default and its check sit in one place to read.
"""
from __future__ import annotations

import dataclasses
import difflib
from importlib import resources
import types
import typing
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from falcli.errors import FalError

# Integers are stored and seeded as int64 (torch.manual_seed, numpy's generators); widths, depths and latent
# sizes of a network above 2**16 are typos, not networks (the estimate in falcli/nn/budget.py checks the rest).
MAX_INT = 2**63 - 1
MAX_MODEL_INT = 2**16


# `feedback.output: latent` on a generator without a latent code: refused by the task's recipe check (torch-free,
# before anything is written) and, for any task, when the feedback modules are built (falcli/core/feedback.py).
LATENT_REFUSED = ("feedback.output: latent moves the generator's latent code, and this task's generator reads a "
                  "condition image instead; use residual or direct")


@dataclass(frozen=True)
class FeedbackConfig:
    """The FAL loop (methods.md §0). Every unknown of the paper is an option; steps: 1 is the plain GAN."""

    steps: int = 3                      # T in training: generator passes; step t>1 reads D's map of step t-1
    test_steps: int | None = None       # T at sampling/evaluation; None = steps. May exceed steps (refinement)
    signal: Literal["logits", "sigmoid", "error"] = "logits"  # what of D's map is fed: raw, σ(D), 1-σ(D)
    feed_previous: bool = True          # also feed the previous output (the thing being fixed)
    feed_condition: bool = True         # also feed the condition input (translation only; ignored otherwise)
    transform: Literal["sft", "spade"] = "sft"  # AST equation: h·(1+γ)+β, or norm(h)·(1+γ)+β
    placement: tuple[int, ...] | None = None    # generator stages that get an AST; None = the task's default
    encoder_channels: int = 32          # width of the feedback encoder's output (the AST's input)
    hidden_channels: int = 64           # hidden width of each AST's γ/β predictor
    detach_previous: bool = True        # truncated backprop: no gradient from step t into step t-1's output
    detach_map: bool = True             # D's map is an input signal: no gradient flows back through it
    step_weights: tuple[float, ...] | None = None  # G loss weight per step; None = equal (1 each)
    discriminate: Literal["all", "last", "first"] = "all"  # D trains on the fakes of every step, the last only,
                                        # or step 1's only: with later_steps_train feedback_only, D and step 1
                                        # then train exactly as the plain GAN, and later steps refine against it
    # The later steps as a *correction* of the previous one (docs/toy.md measures each; all off = FAL as
    # published, bit for bit):
    output: Literal["direct", "residual", "latent"] = "direct"  # step t outputs x_t itself, or x_(t-1) + Δ_t in
                                        # the generator's pre-activation space (before tanh/sigmoid: stays in
                                        # range), or G(z_t) with z_t = z_(t-1) + Δz_t (a learned latent DOT:
                                        # every step stays on G's own map; tasks with a latent code only)
    proximity_weight: float = 0.0       # λ of a G loss term λ·‖x_t − x_(t-1)‖² at t ≥ 2 (x_(t-1) detached)
    proximity: Literal["uniform", "spatial"] = "uniform"  # spatial: weighted per location by σ(D) of x_(t-1),
                                        # so what D found fake may change and the rest must stay
    later_steps_train: Literal["all", "feedback_only"] = "all"  # feedback_only: the losses of steps ≥ 2 train
                                        # only the feedback modules (protects step 1's backbone)
    lr: float | None = None             # learning rate of the feedback modules; None = train.lr_generator
    diversity_weight: float = 0.0       # w of a G loss term at t ≥ 2 charging a step for pulling samples closer
                                        # together than the previous step had them (the later steps' collapse)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise FalError(f"feedback.steps must be >= 1 (got {self.steps}); 1 is the plain GAN")
        if self.test_steps is not None and self.test_steps < 1:
            raise FalError(f"feedback.test_steps must be >= 1 (got {self.test_steps})")
        if self.step_weights is not None and len(self.step_weights) != self.steps:
            raise FalError(f"feedback.step_weights needs {self.steps} entries (one per step), "
                           f"got {len(self.step_weights)}")
        if self.encoder_channels < 1 or self.hidden_channels < 1:
            raise FalError("feedback.encoder_channels and feedback.hidden_channels must be >= 1")
        if self.proximity_weight < 0:
            raise FalError(f"feedback.proximity_weight must be >= 0 (got {self.proximity_weight})")
        if self.diversity_weight < 0:
            raise FalError(f"feedback.diversity_weight must be >= 0 (got {self.diversity_weight})")
        if self.lr is not None and self.lr <= 0:
            raise FalError(f"feedback.lr must be > 0, or null for train.lr_generator (got {self.lr})")

    @property
    def sampling_steps(self) -> int:
        if self.steps == 1:  # a plain GAN has no feedback modules: a FAL recipe's test_steps do not apply to it
            return 1         # (`--set feedback.steps=1` on recipes/streets.yaml, whose test_steps is 2)
        return self.test_steps if self.test_steps is not None else self.steps

    def plain(self) -> FeedbackConfig:
        """The plain GAN's loop: one step, and none of the T-step model's sampling steps or step weights (every
        other option is kept; with one step none of them acts)."""
        return dataclasses.replace(self, steps=1, test_steps=None, step_weights=None)

    @property
    def weights(self) -> tuple[float, ...]:
        return self.step_weights if self.step_weights is not None else (1.0,) * self.steps


@dataclass(frozen=True)
class LossConfig:
    adversarial: Literal["vanilla", "lsgan", "hinge", "wgan-gp"] = "vanilla"  # see falcli.core.losses.ADVERSARIAL
    gp_weight: float = 10.0             # WGAN-GP gradient-penalty weight λ (used only with wgan-gp)
    r1_weight: float = 0.0              # γ/2 of the R1 penalty on reals; 0 disables it
    r1_every: int = 16                  # lazy R1: apply every N iterations, scaled by N
    l1_weight: float = 0.0              # L1 to the target (pix2pix λ=100); paired tasks only

    def __post_init__(self) -> None:
        if self.gp_weight < 0 or self.r1_weight < 0 or self.l1_weight < 0:
            raise FalError("loss weights (gp_weight, r1_weight, l1_weight) must be >= 0")
        if self.r1_every < 1:
            raise FalError(f"loss.r1_every must be >= 1 (got {self.r1_every})")


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 2000              # optimizer updates of each of G and D
    batch_size: int = 64                # global batch (split across processes under torchrun)
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)   # Adam β1, β2
    lr_decay_start: int | None = None   # iteration where lr starts decaying linearly to 0; None = constant
    # The same as a fraction of the run (pix2pix's n_epochs / (n_epochs + n_epochs_decay), 0.5): shortening the
    # run with --set train.iterations=N keeps it valid. Set one of the two.
    lr_decay_start_fraction: float | None = None
    ema_decay: float = 0.0              # EMA of G per iteration (e.g. 0.999); 0 disables it
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU
    cuda_graph: bool = False            # replay the whole step from CUDA graphs (one CUDA process; falcli/core/cuda_graphs.py)
    log_every: int = 100                # iterations between metrics.jsonl lines (losses are read only then)
    sample_every: int = 1000            # iterations between sample pictures; 0 = only at the end
    checkpoint_every: int = 1000        # iterations between checkpoints (always one at the end)
    keep_checkpoints: int | None = 3    # newest checkpoints kept on disk; None keeps all

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise FalError(f"train.{name} must be >= 1 (got {getattr(self, name)})")
        if self.checkpoint_every % self.log_every:
            # Checkpoints then fall on log lines: losses are checked finite before weights are saved, and a
            # resumed run logs the same averages as an uninterrupted one.
            raise FalError(f"train.checkpoint_every ({self.checkpoint_every}) must be a multiple of "
                           f"train.log_every ({self.log_every})")
        if self.sample_every < 0:
            raise FalError(f"train.sample_every must be >= 0 (got {self.sample_every})")
        if self.lr_generator <= 0 or self.lr_discriminator <= 0:
            raise FalError("train.lr_generator and train.lr_discriminator must be > 0")
        if not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise FalError(f"train.betas must both be in [0, 1) (got {list(self.betas)}); Adam's usual are [0.5, 0.999]")
        if not 0.0 <= self.ema_decay < 1.0:
            raise FalError(f"train.ema_decay must be in [0, 1) (got {self.ema_decay})")
        if self.keep_checkpoints is not None and self.keep_checkpoints < 1:
            raise FalError("train.keep_checkpoints must be >= 1, or null to keep all")
        if self.lr_decay_start is not None and self.lr_decay_start_fraction is not None:
            raise FalError("train.lr_decay_start and train.lr_decay_start_fraction are both set; keep one (set the "
                           "other to null)")
        if self.lr_decay_start_fraction is not None and not 0.0 <= self.lr_decay_start_fraction < 1.0:
            raise FalError(f"train.lr_decay_start_fraction must be in [0, 1) (got {self.lr_decay_start_fraction})")
        if self.lr_decay_start is not None and not 0 <= self.lr_decay_start < self.iterations:
            raise FalError(f"train.lr_decay_start must be in [0, train.iterations = {self.iterations}) (got "
                           f"{self.lr_decay_start}); for a shorter run set train.lr_decay_start=null "
                           f"train.lr_decay_start_fraction=0.5 (decay over the second half, as pix2pix)")

    @property
    def decay_start(self) -> int | None:
        """The iteration where the learning rate starts decaying to 0 (None: constant)."""
        if self.lr_decay_start_fraction is not None:
            return int(round(self.lr_decay_start_fraction * self.iterations))
        return self.lr_decay_start


@dataclass(frozen=True)
class MethodConfig:
    """FAL's successors, as switches that combine with feedback.steps (all off = the plain GAN)."""

    eqgan_sa: bool = False              # EqGAN-SA (Wang et al., CVPR 2022): heatmap-driven spatial encoding in G
                                        # and alignment of D's Grad-CAM attention with the heatmaps
    align_weight: float = 1.0           # EqGAN-SA alignment-loss weight (the official code uses 1)
    align_threshold: float = 0.25       # EqGAN-SA hard-pixel mining: mean over errors above this, if any
    glead: bool = False                 # GLeaD (Bai et al., CVPR 2023): D must extract what the frozen G decodes
                                        # back into the input image
    glead_real_weight: float = 10.0     # GLeaD reconstruction weight on real images
    glead_fake_weight: float = 3.0      # GLeaD reconstruction weight on generated images
    glead_distance: Literal["lpips", "mse"] = "lpips"  # lpips needs the AlexNet trunk; mse is the fallback

    def __post_init__(self) -> None:
        for name in ("align_weight", "align_threshold", "glead_real_weight", "glead_fake_weight"):
            if getattr(self, name) < 0:
                raise FalError(f"method.{name} must be >= 0 (got {getattr(self, name)})")
        if self.eqgan_sa and self.glead:
            # GLeaD decodes real images through G's later layers, which under EqGAN-SA need heatmaps that a
            # real image does not have.
            raise FalError("method.eqgan_sa and method.glead cannot be combined (GLeaD's decoding of real images "
                           "through G has no heatmaps); turn one off — each combines with feedback.steps")

    @property
    def any(self) -> bool:
        return self.eqgan_sa or self.glead


@dataclass(frozen=True)
class EvaluateConfig:
    metrics: tuple[str, ...] = ()       # metric names for `fal evaluate all`; empty = the task's defaults
    num_samples: int = 1000             # generated samples per feedback step


@dataclass(frozen=True)
class Recipe:
    task: str                           # key into falcli.tasks.TASKS
    name: str | None = None             # run name; None = the recipe file's stem
    seed: int = 0                       # seeds weights, latents and data order
    data: Any = None                    # the task's own DataConfig
    model: Any = None                   # the task's own ModelConfig
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    method: MethodConfig = field(default_factory=MethodConfig)


# --- loading ---

def shipped_recipes_dir() -> Path:
    """The recipes that come with fal: the package `falcli.recipes` of an installed wheel (pyproject maps the
    checkout's top-level recipes/ onto it), else the checkout's recipes/ (a source tree on PYTHONPATH)."""
    try:
        # falcli.recipes holds no __init__.py (the checkout's recipes/ stays plain YAML), so it is a namespace
        # package whose files() is a MultiplexedPath: its entries are real paths, the folder is their parent.
        entries = [entry for entry in resources.files("falcli.recipes").iterdir() if entry.name.endswith(".yaml")]
    except ModuleNotFoundError:
        entries = []
    if entries:
        return Path(str(entries[0])).parent
    return Path(__file__).resolve().parents[1] / "recipes"


SHIPPED_RECIPES = shipped_recipes_dir()


def shipped_recipes() -> list[Path]:
    """The shipped recipe files, sorted by name."""
    return sorted(SHIPPED_RECIPES.glob("*.yaml"))


def find_recipe(path: Path | str) -> Path:
    """A recipe file: `path` itself when it exists; else the shipped recipe it names — a bare name (`toy`,
    `toy.yaml`) or `recipes/NAME.yaml` typed outside the checkout."""
    path = Path(path)
    if path.is_file():
        return path
    bare = len(path.parts) == 1
    if bare or (path.parts[:1] == ("recipes",) and len(path.parts) == 2):
        shipped = SHIPPED_RECIPES / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
        if shipped.is_file():
            return shipped
    if path.is_dir():
        raise FalError(f"{path}: a folder, not a recipe file; pass a YAML file such as recipes/toy.yaml")
    stems = [p.stem for p in shipped_recipes()]
    close = difflib.get_close_matches(path.stem, stems, n=1) if bare or path.parts[:1] == ("recipes",) else []
    if close:  # a shipped recipe's name, mistyped
        raise FalError(f"{path}: no such recipe file (did you mean {close[0]}?); `fal recipes` lists the shipped ones")
    raise FalError(f"{path}: no such recipe file; the shipped ones are {', '.join(stems)} (`fal recipes` lists them)")


class UnknownSection(FalError):
    """A top-level key no recipe has, reported against its `source`; `key` lets the caller who knows where the key
    came from (a --set, not the file) say so."""

    def __init__(self, key: str, source: str, detail: str) -> None:
        super().__init__(f"{source}: {detail}")
        self.key, self.detail = key, detail


def assemble(raw: dict, recipe_cls: type, sections: dict[str, type], source: str = "recipe") -> Any:
    """Build `recipe_cls` (Recipe, or a judge's recipe) from a plain dict whose `task:` is already known;
    `sections` gives the task's own dataclasses ({"data": DataConfig, "model": ModelConfig}). Checks types and
    keys only: the task's cross-section checks and the size estimate are falcli/resolve.py's."""
    check_keys(raw, source)
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(recipe_cls)
    known = [f.name for f in dataclasses.fields(recipe_cls)]
    for key, value in raw.items():
        if key not in known:
            raise UnknownSection(key, source, _unknown_key_message(key, known))
        if key in sections:
            values[key] = build(sections[key], value or {}, key)
        elif dataclasses.is_dataclass(hints[key]):
            values[key] = build(hints[key], value or {}, key)
        else:
            values[key] = _coerce(value, hints[key], key)
    for key, cls in sections.items():
        values.setdefault(key, cls())
    seed = values.get("seed", 0)
    if not 0 <= seed <= MAX_INT:
        raise FalError(f"{source}: seed {seed} is outside 0 … 2**63-1 (what torch and numpy accept)")
    return recipe_cls(**values)


def check_keys(raw: dict, source: str, path: str = "") -> None:
    """Every key of every section is a string (YAML allows `1: x` or `[a]: x`; dataclasses do not)."""
    for key, value in raw.items():
        if not isinstance(key, str):
            raise FalError(f"{source}: key {path}{key!r} is not a name; recipe keys are words such as train.lr_generator")
        if isinstance(value, dict):
            check_keys(value, source, f"{path}{key}.")


def build(cls: type, data: Any, path: str) -> Any:
    """Construct dataclass `cls` from a mapping, rejecting unknown keys and checking scalar types."""
    if not isinstance(data, dict):
        raise FalError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise FalError(_unknown_key_message(f"{path}.{key}", [f"{path}.{n}" for n in names]))
        kwargs[key] = _coerce(value, hints[key], f"{path}.{key}")
    return cls(**kwargs)  # __post_init__ checks raise FalError naming the key


def _unknown_key_message(key: str, known: list[str]) -> str:
    if not key.isprintable():
        key = repr(key)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else f" (valid keys: {', '.join(known)})"
    return f"{key}: unknown key{hint}"


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """Check `value` against type `hint`, coercing only the safe cases (int → float, '2e-4' → float)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except FalError as error:
                errors.append(str(error))
        raise FalError(errors[0] if errors else f"{path}: invalid value {_short(value)}")
    if origin is Literal:
        if value not in args:
            raise FalError(f"{path}: {_short(value)} is not one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise FalError(f"{path}: expected a list, got {_short(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise FalError(f"{path}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):  # YAML 1.1 reads `on`/`yes` as bools; strings are refused
            raise FalError(f"{path}: expected true or false, got {_short(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FalError(f"{path}: expected an integer, got {_short(value)}")
        if abs(value) > MAX_INT:
            raise FalError(f"{path}: {_short(value)} is beyond the 64-bit range; use a sensible number")
        if path.startswith("model.") and value > MAX_MODEL_INT:
            raise FalError(f"{path}: {value} is above {MAX_MODEL_INT}, no network width or depth this machine "
                           f"can train; use a sensible number")
        return value
    if hint is float:
        if isinstance(value, bool):
            raise FalError(f"{path}: expected a number, got {_short(value)}")
        number = None
        if isinstance(value, (int, float)):
            try:
                number = float(value)
            except OverflowError:
                raise FalError(f"{path}: {_short(value)} is too large for a number") from None
        elif isinstance(value, str):  # PyYAML reads `2e-4` (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise FalError(f"{path}: expected a number, got {_short(value)}")
        if not math.isfinite(number):
            raise FalError(f"{path}: {value!r} is not a finite number")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise FalError(f"{path}: expected a string, got {_short(value)}")
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise FalError(f"{path}: expected a path, got {_short(value)}")
        return Path(value)
    raise TypeError(f"{path}: unsupported type hint {hint!r}")  # a bug in a config dataclass, not user input


def _short(value: Any) -> str:
    """repr(value), cut to keep the error one line (a fuzzed recipe can hold a long list or a huge int)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"an integer of {len(str(value))} digits"
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


# --- writing ---

def recipe_to_dict(recipe: Recipe) -> dict:
    """Plain YAML-able dict of a resolved recipe (tuples as lists, paths as strings)."""
    return _plain(dataclasses.asdict(recipe))


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def defaults_of(recipe, sections: dict[str, type]) -> dict:
    """The same shape as recipe_to_dict, holding each field's default (to mark what a recipe changed)."""
    default = type(recipe)(task=recipe.task, **{key: cls() for key, cls in sections.items()})
    return recipe_to_dict(default)
