"""The run configuration: one frozen dataclass, the single source of flag names.

`run.py` turns every field of `Config` into an absl flag of the same name,
type, default and help text, so `--help`, this file and the docs cannot drift
apart. Library code below `run.py` never reads flags: `tf_simclr.train.run`
takes a `Config`, and the building blocks it calls take plain arguments.

Flag names, default meanings and units follow the official SimCLR TF2 code
(`tf2/run.py` of google-research/simclr), so its README commands work here.
Deliberate differences from its defaults are marked "(reference: ...)".
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
from typing import Any

# The allowed values of each choice flag and the bounds of the numbers: a pure-Python
# leaf shared with the modules that use them, so that parsing a flag never imports
# TensorFlow and the library checks its arguments against the same bounds.
from tf_simclr.choices import (  # noqa: F401 (AUGMENT_IMPLS and the others: read by tests)
    AUGMENT_IMPLS,
    BOUNDS,
    COLOR_JITTER_IMPL,
    COLOR_JITTER_IMPLS,
    DOWNLOAD_CHOICES,
    EMBED_FORMATS,
    EMBED_KEYS,
    EXPORT_FORMATS,
    INIT_FROM_PROBE,
    LR_SCALINGS,
    MODES,
    OPTIMIZERS,
    PRECISION_CHOICES,
    PROJECTION_HEAD_MODES,
    RESNET_DEPTHS,
    STRATEGIES,
    TRAIN_MODES,
    TRAINING_MODES,
)
from tf_simclr.errors import UNSET, ArgumentError, ConfigError


@contextlib.contextmanager
def flags_for(**flag_of_argument: str):
    """Turns a library `ArgumentError` into a `ConfigError` naming the flag that supplied it.

    The library names its own arguments (`batch_size`, `split`); the caller
    says which flag each came from here, e.g. `flags_for(batch_size="eval_batch_size",
    split="eval_split")`. Arguments named like a flag (`data_dir`, `dataset`)
    need no entry. Errors about any other argument pass through unchanged.
    """
    try:
        yield
    except ArgumentError as e:
        flag = flag_of_argument.get(e.argument, e.argument)
        if flag not in _FIELD_NAMES:
            raise
        raise ConfigError(flag, e.message, None if e.value is UNSET else e.value) from e


def _field(default: Any, help: str, choices: tuple | None = None) -> Any:
    metadata = {"help": help}
    if choices is not None:
        metadata["choices"] = choices
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs. Field name == flag name."""

    # --- What to do -----------------------------------------------------------------
    mode: str = _field(
        "train",
        "train; eval (the latest checkpoint in --model_dir on --eval_split); "
        "train_then_eval (train, evaluate, export); export (SavedModel of the latest checkpoint); "
        "import (a published SimCLR v1/v2 model, the reference's TF2 SavedModel or checkpoint "
        "given as --checkpoint, into a new --model_dir: checkpoint, model.json, SavedModel; "
        "its architecture is read from the variables, see docs/official_models.md); "
        "preview (a PNG of training views for the data and augmentation flags, nothing "
        "trained: see --preview_file); embed (the embedding of each image of --data_dir/"
        "--eval_split, with the model of --checkpoint or --model_dir, into --embed_output). "
        "eval and export rebuild the model from --model_dir/model.json: no architecture or "
        "data flags needed (a flag that contradicts it is an error).",
        MODES,
    )
    train_mode: str = _field(
        "pretrain",
        "pretrain: SimCLR contrastive pretraining; finetune: supervised fine-tuning or, with "
        "--fine_tune_after_block=4, linear evaluation on frozen features; distill: train the "
        "student of these flags on --teacher's predictions (SimCLRv2 Sec. 2.3).",
        TRAIN_MODES,
    )
    checkpoint: str = _field(
        "",
        "Fine-tuning starts from this pretraining checkpoint: a ckpt-N prefix, a model_dir, or "
        "a SavedModel exported by tf_simclr (model_dir/saved_model/<step>); its model.json "
        "gives the encoder and head architecture. A published SimCLR model (the reference's "
        "TF2 SavedModel or checkpoint) is imported when the run starts, its architecture read "
        "from its variables (docs/official_models.md). Ignored when --model_dir already holds "
        "a checkpoint (then the run resumes). --mode=import: the reference model to import. "
        "--mode=embed: the model to embed with (else --model_dir's). A published model's "
        "name (simclrv2/pretrained/r50_1x_sk1, docs/official_models.md) works too: "
        "downloaded and imported once, then read from the cache; with "
        "--train_mode=pretrain, pretraining continues from it.",
    )
    teacher: str = _field(
        "",
        "--train_mode=distill: the teacher, a fine-tuned model_dir, ckpt-N prefix or exported "
        "SavedModel of tf_simclr, or a published SimCLR SavedModel or checkpoint (imported at "
        "the start), or a published model's name (simclrv2/finetuned_100pct/r50_1x_sk1). It "
        "runs in inference mode and is not saved with the student.",
    )
    distill_temperature: float = _field(
        1.0, "Distillation temperature T of both softmaxes (SimCLRv2 eq. 2; the paper: 1)."
    )
    distill_label_weight: float = _field(
        0.0,
        "Adds this times the supervised cross-entropy on the labelled images "
        "(--label_fraction / --labels_per_class choose them; all when neither) to the "
        "distillation loss; 0 (the paper's main results): labels ignored.",
    )
    model_dir: str = _field(
        "", "Directory for checkpoints, TensorBoard logs and the resolved config. Required."
    )
    seed: int = _field(0, "Seed for shuffling and weight initialisation.")

    # --- Data -----------------------------------------------------------------------
    dataset: str = _field(
        "",
        "A TFDS dataset name (e.g. cifar10, imagenet2012), or `image_folder` to read "
        "--data_dir/<split>/<label>/<image> files. Required to train; eval and export read "
        "it from --model_dir/model.json. (reference: default imagenet2012)",
    )
    data_dir: str = _field(
        "", "TFDS data directory, or the root of the image folder for --dataset=image_folder."
    )
    download: str = _field(
        "auto",
        "A TFDS dataset not prepared under --data_dir: true downloads and prepares it; false "
        "fails at once; auto downloads only when the network answers (a probe of a few "
        "seconds), else fails at once saying how to prepare it offline.",
        DOWNLOAD_CHOICES,
    )
    train_split: str = _field(
        "train",
        "Split to train on; TFDS slicing such as train[:10%], or imagenet2012_subset/1pct "
        "(or /10pct) for the official ImageNet label subsets.",
    )
    eval_split: str = _field("validation", "Split to evaluate on.")
    cache_dataset: bool = _field(False, "Cache the decoded dataset in memory.")
    shuffle_buffer: int = _field(
        0, "Shuffle buffer in examples; 0 picks max(10 * batch, 1000), capped at the split."
    )
    image_size: int = _field(224, "Input image side in pixels. <= 32 selects the CIFAR stem.")
    color_jitter_strength: float = _field(
        1.0,
        "Colour distortion strength s (paper Appendix A; 0.5 for CIFAR). 0 turns the whole "
        "colour stage off, grayscale included, as in the reference.",
    )
    color_jitter_impl: str = _field(
        COLOR_JITTER_IMPL,
        "Colour jitter brightness: simclrv2 multiplies by U[1-0.8s, 1+0.8s] (the reference "
        "default); simclrv1 adds U[-0.8s, 0.8s] (the v1 paper's runs).",
        COLOR_JITTER_IMPLS,
    )
    use_blur: bool = _field(True, "Gaussian blur augmentation (off for CIFAR in the paper).")
    use_crop: bool = _field(True, "Random resized crop augmentation (ablations).")
    use_flip: bool = _field(True, "Horizontal flip augmentation (ablations).")
    use_color_jitter: bool = _field(True, "Colour jitter augmentation (ablations).")
    use_grayscale: bool = _field(
        True, "Random grayscale augmentation (ablations; off when --color_jitter_strength=0)."
    )
    augment_impl: str = _field(
        "per_image",
        "Where training views are made, all with the same distribution: per_image (tf.data "
        "map per image, bicubic crop resize); batched (tf.data, whole batches at once, "
        "bilinear crop resize; faster than per_image on a CPU, about 2x at 32 and 224 px "
        "here, see docs/performance.md); device "
        "(pretraining only: the train step "
        "augments batches of decoded images on the accelerator; all images of one size).",
        AUGMENT_IMPLS,
    )

    # --- Model ----------------------------------------------------------------------
    resnet_depth: int = _field(50, "ResNet depth.", RESNET_DEPTHS)
    width_multiplier: float = _field(
        1.0, "ResNet width multiplier; fractions such as 0.5 shrink it."
    )
    sk_ratio: float = _field(
        0.0,
        "Selective kernels (SimCLRv2): the gate's channel ratio, 0.0625 in the paper; > 0 also "
        "gives the ResNet-D stem and average-pool shortcuts. 0: a plain ResNet.",
    )
    se_ratio: float = _field(0.0, "Squeeze-excitation ratio in each block; 0: none.")
    batch_norm_decay: float = _field(0.9, "BatchNorm moving-average momentum.")
    global_bn: bool = _field(
        True, "Synchronise BatchNorm statistics across replicas (global BN, paper Sec. 2.3)."
    )
    proj_head_mode: str = _field("nonlinear", "Projection head type.", PROJECTION_HEAD_MODES)
    proj_out_dim: int = _field(128, "Output dimension of the projection head.")
    num_proj_layers: int = _field(
        3, "Layers in the non-linear projection head (2: SimCLRv1, 3: SimCLRv2)."
    )
    ft_proj_selector: int = _field(
        0,
        "Which projection-head layer the probe/fine-tuning reads (0: encoder output, k: the "
        "output of head layer k, -1: the last head layer, as the reference).",
    )
    variable_schema: str = _field(
        "",
        "Accepted so the reference's commands run unchanged; unused: what --checkpoint "
        "loads is decided by structure (the encoder, and the head when "
        "--ft_proj_selector > 0), never by a name pattern.",
    )
    fine_tune_after_block: int = _field(
        -1,
        "Fine-tune the layers after this block: -1 everything, 0 all but the stem, "
        "4 only the linear head (linear evaluation: frozen encoder, BatchNorm in inference mode).",
    )
    zero_init_logits_layer: bool = _field(
        False,
        "Zero-initialise the classifier's weights (then it does not start from the "
        "--checkpoint's probe, see --init_classifier_from_probe).",
    )
    init_classifier_from_probe: str = _field(
        "auto",
        "Fine-tuning from a pretrained --checkpoint: start the classifier from its online "
        "probe (the reference restores it). auto: when the probe fits (same classes, same "
        "input width; else a fresh classifier, with a log line) and --zero_init_logits_layer "
        "is off; true: always (an error when it does not fit); false: a fresh classifier. "
        "Ignored when resuming from --model_dir.",
        INIT_FROM_PROBE,
    )

    # --- Loss -----------------------------------------------------------------------
    temperature: float = _field(0.1, "NT-Xent temperature.")
    hidden_norm: bool = _field(True, "L2-normalise projections (cosine similarity).")

    # --- Optimisation ---------------------------------------------------------------
    optimizer: str = _field("lars", "Optimizer.", OPTIMIZERS)
    momentum: float = _field(0.9, "Momentum for lars and momentum optimizers.")
    weight_decay: float = _field(1e-6, "Weight decay (not on BatchNorm parameters or biases).")
    learning_rate: float = _field(
        0.3, "Base learning rate per 256 images (see --learning_rate_scaling)."
    )
    learning_rate_scaling: str = _field(
        "linear", "Peak LR = learning_rate * B/256 (linear) or * sqrt(B) (sqrt).", LR_SCALINGS
    )
    warmup_epochs: float = _field(
        10,
        "Linear warmup epochs (floor(warmup_epochs * N / B) steps), then cosine decay to 0. "
        "Longer than the run: the rate ramps to total / warmup of its peak (a warning).",
    )
    train_batch_size: int = _field(512, "Global batch size (all replicas together).")
    train_epochs: int = _field(
        100,
        "Training epochs (ignored when --train_steps > 0): N * epochs // B + 1 steps for N "
        "examples and batch B, as the reference.",
    )
    train_steps: int = _field(
        0, "Training steps; overrides --train_epochs (not the warmup) when > 0."
    )
    lineareval_while_pretraining: bool = _field(
        True, "Train a linear probe on stop-gradient features during pretraining."
    )
    label_fraction: float = _field(
        0.0,
        "Fine-tune on a class-balanced, seeded fraction of the training labels "
        "(0.01 = 1%, 0.1 = 10%); 0: all. TFDS slicing in --train_split works too.",
    )
    labels_per_class: int = _field(
        0, "Fine-tune on this many seeded labelled images per class; 0: all."
    )

    # --- Evaluation -----------------------------------------------------------------
    eval_batch_size: int = _field(256, "Batch size for evaluation and feature extraction.")
    eval_knn: bool = _field(
        True,
        "When evaluating a pretrained model, also report weighted kNN top-1 "
        "(cosine, on encoder features of --train_split).",
    )
    knn_k: int = _field(200, "Neighbours for the kNN evaluation.")
    knn_train_examples: int = _field(
        0,
        "Cap on the --train_split examples whose features the kNN evaluation compares "
        "against: N // classes per class, the first ones in a seeded order (--seed), so "
        "only those are read; 0: the whole split (as published kNN numbers).",
    )
    knn_temperature: float = _field(0.1, "Temperature of the kNN vote weights.")
    eval_steps: int = _field(
        0,
        "Evaluate the classifier (or probe) on only this many batches of --eval_split, "
        "its files in a seeded random order (--seed), and say so in the results "
        "(partial_eval, split_num_examples); 0: the whole split (as the reference). kNN "
        "always uses the whole split.",
    )
    eval_name: str = _field(
        "",
        "Name of this evaluation: its outputs are eval_<name>/ (TensorBoard) and "
        "eval_<name>_<step>.json in --model_dir; empty: the split's name. (The reference "
        "TF2 code accepts it and ignores it.)",
    )
    eval_continuous: bool = _field(
        False,
        "--mode=eval: poll --model_dir for new checkpoints and evaluate each until the "
        "run's last step (--train_steps, or the steps of --train_epochs) is evaluated, so "
        "an evaluator can run beside a trainer, as the reference's --mode=eval always "
        "does. False: evaluate the latest checkpoint once.",
    )
    eval_poll_secs: float = _field(
        15.0, "--eval_continuous: seconds between looks for a new checkpoint (reference: 15)."
    )
    eval_timeout_secs: float = _field(
        0.0,
        "--eval_continuous: stop when no new checkpoint appeared for this many seconds; "
        "0: wait until the last step (as the reference).",
    )
    eval_projector: bool = _field(
        False,
        "--mode=eval: also write TensorBoard's embedding projector files for --eval_split "
        "(encoder features, labels, a sprite of the images) to model_dir/eval_<split>/.",
    )

    # --- Checkpoints and logs -------------------------------------------------------
    checkpoint_epochs: int = _field(1, "Save a checkpoint every this many epochs.")
    checkpoint_steps: int = _field(0, "Save every this many steps; overrides epochs when > 0.")
    keep_checkpoint_max: int = _field(5, "Checkpoints to keep.")
    keep_hub_module_max: int = _field(
        1,
        "Exported SavedModels (model_dir/saved_model/<step>) to keep: an export deletes "
        "the older ones beyond this number (the reference's Hub modules); 0: keep all.",
    )
    embed_output: str = _field(
        "",
        "--mode=embed: the directory to write: embeddings.npy (float32 [N, D], row i = image "
        "i) and paths.csv (path,label; the path relative to the split folder), or "
        "embeddings.parquet; written complete or not at all.",
    )
    embed_key: str = _field(
        "embedding",
        "--mode=embed: the encoder output (embedding) or the projection head's (projection).",
        EMBED_KEYS,
    )
    embed_format: str = _field(
        "npy",
        "--mode=embed: npy (embeddings.npy + paths.csv) or parquet (one file; needs pyarrow).",
        EMBED_FORMATS,
    )
    embed_neighbours: int = _field(
        0,
        "--mode=embed: also write neighbours.csv, each image's this many nearest other "
        "images by cosine similarity; 0: none.",
    )
    export_format: str = _field(
        "saved_model",
        "What an export writes, a comma list of: saved_model (model_dir/saved_model/<step>/, "
        "for TF Serving and TensorFlow), litert (model_dir/litert/<step>.tflite), onnx "
        "(model_dir/onnx/<step>.onnx; needs tf2onnx and onnxruntime). LiteRT and ONNX hold "
        "a float32 graph of float32 [N, image_size, image_size, 3] images in [0, 1] -> "
        "embedding (and logits), checked against the Keras model when written; see "
        "docs/serving.md.",
    )
    export_litert_quantize: bool = _field(
        False,
        "LiteRT: dynamic-range quantisation (int8 weights, ~4x smaller); its difference "
        "from the Keras model is reported, not checked.",
    )
    train_summary_steps: int = _field(
        100,
        "Write TensorBoard scalars every this many steps, and at the last step of a run; 0: none.",
    )
    summary_images: int = _field(
        0,
        "Pretraining: write 4 training images, each beside two fresh views of it, to "
        "TensorBoard (train/views) at the first step and every this many steps; 0: none.",
    )
    label_free_monitor_steps: int = _field(
        0,
        "Pretraining: every this many steps (and at the first), RankMe, alignment, "
        "uniformity and embedding std of a fixed batch of view pairs, as TensorBoard scalars "
        "label_free/* (docs/monitoring.md); no labels needed. 0: off.",
    )
    label_free_monitor_images: int = _field(
        256,
        "Images in the label-free monitor's fixed batch (two views each), drawn once from "
        "the training split.",
    )
    verbose: int = _field(
        1,
        "Keras fit verbosity: 0 silent, 1 progress bar (on a terminal; in a log file or CI a "
        "log line every 5% of the steps or minute: step, loss, img/s), 2 one line/epoch.",
    )

    # --- Pictures -------------------------------------------------------------------
    preview_images: int = _field(
        8,
        "--mode=preview: images of --train_split drawn, each beside 3 pairs of the training "
        "views --train_mode and the augmentation flags make.",
    )
    preview_file: str = _field(
        "", "--mode=preview: the PNG to write (needs matplotlib); empty: model_dir/views.png."
    )

    # --- Speed ----------------------------------------------------------------------
    precision: str = _field(
        "float32",
        "Keras dtype policy of the encoder: mixed_* compute convolutions in bfloat16/float16 "
        "with float32 weights; the projection head, classifier, loss and BatchNorm statistics "
        "stay float32. mixed_float16 adds dynamic loss scaling (a step whose scaled gradients "
        "overflow is skipped and not counted). auto: mixed_float16 on GPUs of compute "
        "capability >= 7.0, mixed_bfloat16 on a CPU with AVX512-BF16 or AMX, else float32 "
        "(logged; config.json and model.json record the policy it chose, and --mode=eval "
        "and export use the recorded one unless --precision is given).",
        PRECISION_CHOICES,
    )
    jit_compile: bool = _field(
        False,
        "XLA-compile the train step (model.compile(jit_compile=...)). One replica only: "
        "Keras 3 compiles all replicas into one XLA program (docs/distributed.md).",
    )

    # --- Distribution ---------------------------------------------------------------
    strategy: str = _field(
        "auto",
        "tf.distribute strategy (see docs/distributed.md). auto: tpu when --use_tpu or "
        "--tpu_name is given, multi_worker_mirrored when TF_CONFIG describes several tasks, "
        "mirrored over all local GPUs when there are several, else default. "
        "multi_worker_mirrored reads the cluster from TF_CONFIG.",
        STRATEGIES,
    )
    num_cpu_devices: int = _field(
        0, "Split the CPU into this many logical devices (testing mirrored on a CPU); 0: off."
    )
    use_tpu: bool = _field(
        False, "Train on a Cloud TPU (same as --strategy=tpu). (reference: default True)"
    )
    tpu_name: str = _field(
        "",
        "The Cloud TPU to use: its name, `local` on a TPU VM, or a grpc://host:8470 address.",
    )
    tpu_zone: str = _field("", "GCE zone of the Cloud TPU; empty: detected from the metadata.")
    gcp_project: str = _field(
        "", "GCP project of the Cloud TPU; empty: detected from the metadata."
    )
    master: str = _field(
        "", "Address of the TPU worker (grpc://host:8470), used when --tpu_name is empty."
    )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    @property
    def tpu_address(self) -> str:
        """What `TPUClusterResolver` is given: --tpu_name, else --master (may be empty)."""
        return self.tpu_name or self.master

    @property
    def cifar_stem(self) -> bool:
        """Reference rule: the CIFAR stem (3x3 conv, no max-pool) at image_size <= 32."""
        return self.image_size <= 32

    @property
    def last_proj_layer(self) -> int:
        """Index of the last projection-head layer: what --ft_proj_selector=-1 selects."""
        return {"none": 0, "linear": 1, "nonlinear": self.num_proj_layers}[self.proj_head_mode]

    @property
    def proj_selector(self) -> int:
        """--ft_proj_selector with -1 (the reference's "the last layer") resolved."""
        return self.last_proj_layer if self.ft_proj_selector == -1 else self.ft_proj_selector

    @property
    def export_formats(self) -> tuple[str, ...]:
        """`export_format` as a tuple: "saved_model,onnx" -> ("saved_model", "onnx")."""
        return tuple(f.strip() for f in self.export_format.split(",") if f.strip())

    def validate(self) -> None:
        """Checks values that need no data or devices; raises ConfigError."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices is not None and value not in choices:
                allowed = ", ".join(str(c) for c in choices)
                raise ConfigError(f.name, f"{value!r} is not one of: {allowed}")
        if self.mode == "embed":
            if not self.embed_output:
                raise ConfigError("embed_output", "is required with --mode=embed")
            if not (self.model_dir or self.checkpoint):
                raise ConfigError(
                    "model_dir", "--mode=embed needs the model: --model_dir or --checkpoint"
                )
            if not self.dataset:
                raise ConfigError(
                    "dataset",
                    "--mode=embed needs the images: image_folder with --data_dir and "
                    "--eval_split (the sub-folder), or a TFDS name",
                )
        elif self.embed_output or self.embed_neighbours:
            flag = "embed_output" if self.embed_output else "embed_neighbours"
            raise ConfigError(flag, "applies to --mode=embed only")
        embed_with_checkpoint = self.mode == "embed" and self.checkpoint
        if (
            not self.model_dir
            and not (self.mode == "preview" and self.preview_file)
            and not embed_with_checkpoint
        ):
            raise ConfigError("model_dir", "is required (where checkpoints and logs go)")
        if (self.use_tpu or self.tpu_name) and self.strategy not in ("auto", "tpu"):
            flag = "use_tpu" if self.use_tpu else "tpu_name"
            raise ConfigError(flag, f"asks for a TPU but --strategy={self.strategy}")
        for name, bound in BOUNDS.items():
            value = getattr(self, name)
            if value not in bound:
                note = f" ({bound.note})" if bound.note else ""
                raise ConfigError(name, f"must be {bound}, got {value}{note}")
        if self.train_steps == 0 and self.train_epochs == 0:
            raise ConfigError("train_epochs", "set --train_epochs or --train_steps to > 0")
        if self.checkpoint_steps == 0 and self.checkpoint_epochs == 0:
            raise ConfigError("checkpoint_epochs", "set it or --checkpoint_steps to > 0")
        if not -1 <= self.ft_proj_selector <= self.last_proj_layer:
            raise ConfigError(
                "ft_proj_selector",
                f"must be in [0, {self.last_proj_layer}] (or -1: the last) for "
                f"--proj_head_mode={self.proj_head_mode}",
            )
        training = self.mode in TRAINING_MODES
        if training and self.train_mode == "pretrain" and self.fine_tune_after_block > -1:
            # As the reference, which refuses it too: freezing layers while pretraining.
            raise ConfigError(
                "fine_tune_after_block",
                "freezes layers, which pretraining does not support; use -1 (or "
                "--train_mode=finetune)",
                self.fine_tune_after_block,
            )
        if self.init_classifier_from_probe == "true" and self.zero_init_logits_layer:
            raise ConfigError(
                "init_classifier_from_probe",
                "true contradicts --zero_init_logits_layer (a zero classifier); drop one",
            )
        if self.eval_continuous and self.mode != "eval":
            raise ConfigError("eval_continuous", "applies to --mode=eval only")
        if self.label_fraction and self.labels_per_class:
            raise ConfigError("labels_per_class", "give --label_fraction or this, not both")
        if (self.label_fraction or self.labels_per_class) and self.train_mode == "pretrain":
            raise ConfigError(
                "label_fraction", "label subsets apply to --train_mode=finetune or distill"
            )
        if self.train_mode == "distill" and training and not self.teacher:
            raise ConfigError("teacher", "is required with --train_mode=distill")
        if self.teacher and self.train_mode != "distill":
            raise ConfigError("teacher", "applies to --train_mode=distill only")
        if self.augment_impl == "device" and self.train_mode != "pretrain":
            raise ConfigError(
                "augment_impl",
                "device augmentation is for --train_mode=pretrain; use batched or per_image",
            )
        if self.augment_impl == "device" and self.jit_compile and self.use_blur:
            raise ConfigError(
                "jit_compile",
                "XLA cannot compile the blur of --augment_impl=device (it partitions the "
                "batch dynamically); use --use_blur=false, --augment_impl=batched or "
                "--jit_compile=false",
            )
        if self.label_free_monitor_steps and self.train_mode != "pretrain":
            raise ConfigError("label_free_monitor_steps", "applies to --train_mode=pretrain")
        formats = self.export_formats
        unknown = [f for f in formats if f not in EXPORT_FORMATS]
        if unknown or not formats or len(set(formats)) != len(formats):
            raise ConfigError(
                "export_format",
                f"a comma list of distinct values from: {', '.join(EXPORT_FORMATS)}",
                self.export_format,
            )
        if "onnx" in formats and not all(
            importlib.util.find_spec(m) for m in ("tf2onnx", "onnxruntime")
        ):
            raise ConfigError(
                "export_format",
                "onnx needs tf2onnx and onnxruntime: pip install 'tf_simclr[onnx]'",
                self.export_format,
            )
        # Last: a bad value given on the command line is named first.
        if not self.dataset and self.mode in TRAINING_MODES:
            raise ConfigError(
                "dataset",
                "is required to train: a TFDS name such as cifar10 (with --data_dir where it "
                "is prepared), or image_folder with --data_dir; see --help",
            )


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Config))


def flag_specs() -> list[tuple[str, type, Any, str, tuple | None]]:
    """(name, type, default, help, choices) for each field, for run.py's flag definitions."""
    specs = []
    for f in dataclasses.fields(Config):
        kind = {"str": str, "int": int, "float": float, "bool": bool}[str(f.type)]
        specs.append((f.name, kind, f.default, f.metadata["help"], f.metadata.get("choices")))
    return specs


def save_config(config: Config, model_dir: str) -> str:
    """Writes the resolved config to model_dir/config.json; returns the path."""
    path = os.path.join(model_dir, "config.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json() + "\n")
    os.replace(tmp, path)
    return path


def flags_markdown() -> str:
    """docs/flags.md, generated from `Config` (a test keeps the file in sync)."""
    lines = [
        "# Flags",
        "",
        "Generated from `tf_simclr/config.py` by `python -m tf_simclr.config > docs/flags.md`.",
        "Names, default meanings and units follow the official SimCLR TF2 `run.py`.",
        "",
        "| flag | default | meaning |",
        "|---|---|---|",
    ]
    for name, _, default, help_text, choices in flag_specs():
        if choices is not None:
            help_text += " One of: " + ", ".join(f"`{c}`" for c in choices) + "."
        shown = f"`{default}`" if default != "" else "(empty)"
        lines.append(f"| `--{name}` | {shown} | {help_text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(flags_markdown(), end="")
