"""Tests of the run configuration: validation messages and the generated flag docs."""

import pathlib

import pytest

from tf_simclr.config import Config, ConfigError, flag_specs, flags_markdown

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_docs_flags_md_matches_the_config():
    assert (ROOT / "docs" / "flags.md").read_text() == flags_markdown()


def test_reference_flag_names_exist():
    names = {name for name, *_ in flag_specs()}
    reference = """train_batch_size learning_rate warmup_epochs train_epochs train_steps
        checkpoint_epochs checkpoint_steps keep_checkpoint_max dataset data_dir train_split
        eval_split cache_dataset image_size color_jitter_strength use_blur resnet_depth
        width_multiplier batch_norm_decay global_bn proj_head_mode proj_out_dim
        num_proj_layers ft_proj_selector temperature hidden_norm optimizer momentum
        weight_decay learning_rate_scaling lineareval_while_pretraining model_dir mode
        train_mode use_tpu tpu_name tpu_zone gcp_project master""".split()
    assert set(reference) <= names


@pytest.mark.parametrize(
    "changes, flag",
    [
        ({"mode": "bogus"}, "mode"),
        ({"model_dir": ""}, "model_dir"),
        ({"dataset": ""}, "dataset"),
        ({"dataset": "", "mode": "train_then_eval"}, "dataset"),
        ({"download": "maybe"}, "download"),
        ({"knn_train_examples": -1}, "knn_train_examples"),
        ({"train_batch_size": 0}, "train_batch_size"),
        ({"image_size": 7}, "image_size"),
        ({"width_multiplier": 0.0}, "width_multiplier"),
        ({"temperature": -1.0}, "temperature"),
        ({"ft_proj_selector": 4}, "ft_proj_selector"),
        ({"proj_head_mode": "none", "ft_proj_selector": 1}, "ft_proj_selector"),
        ({"train_steps": 0, "train_epochs": 0}, "train_epochs"),
        ({"use_tpu": True, "strategy": "mirrored"}, "use_tpu"),
        ({"tpu_name": "my-tpu", "strategy": "default"}, "tpu_name"),
        ({"strategy": "horovod"}, "strategy"),
        ({"augment_impl": "gpu"}, "augment_impl"),
        ({"augment_impl": "device", "train_mode": "finetune"}, "augment_impl"),
        ({"augment_impl": "device", "jit_compile": True, "use_blur": True}, "jit_compile"),
    ],
)
def test_validation_names_the_flag(changes, flag):
    config = Config(model_dir="/tmp/run", dataset="cifar10").replace(**changes)
    with pytest.raises(ConfigError) as err:
        config.validate()
    assert err.value.flag == flag
    assert str(err.value).startswith(f"--{flag}: ")
    assert "\n" not in str(err.value)


def test_cifar_stem_rule():
    assert Config(image_size=32).cifar_stem and not Config(image_size=64).cifar_stem


def test_defaults_validate():
    Config(model_dir="/tmp/run", dataset="cifar10").validate()


def test_training_asks_for_a_dataset_while_eval_and_export_read_it_from_the_model_dir():
    # No silent imagenet2012: training without --dataset is one line naming the flag.
    with pytest.raises(ConfigError) as err:
        Config(model_dir="/tmp/run").validate()
    assert str(err.value).startswith("--dataset: is required to train")
    for mode in ("eval", "export", "import"):
        Config(model_dir="/tmp/run", mode=mode).validate()


def test_library_errors_speak_python_and_the_cli_maps_them_to_flags():
    from tf_simclr.config import flags_for
    from tf_simclr.data import DataError, Source, eval_dataset

    source = Source(
        None, num_examples=4, num_classes=2, class_names=("a", "b"), name="toy", split="t"
    )
    with pytest.raises(DataError) as info:
        eval_dataset(source, 32, batch_size=0)
    assert str(info.value) == "batch_size=0: must be a positive integer"  # no flag named
    with pytest.raises(ConfigError) as info:
        with flags_for(batch_size="eval_batch_size"):
            eval_dataset(source, 32, batch_size=0)
    assert str(info.value) == "--eval_batch_size=0: must be a positive integer"
    assert info.value.flag == "eval_batch_size"
    # Arguments named like a flag need no entry; others pass through unchanged.
    with pytest.raises(ConfigError, match="^--data_dir: "):
        with flags_for():
            raise DataError("data_dir", "is required")
    with pytest.raises(DataError, match="^not_a_flag: "):
        with flags_for():
            raise DataError("not_a_flag", "whatever")


def test_colour_flags_reach_the_augmentation():
    from tf_simclr import builders

    config = Config(model_dir="/x", color_jitter_impl="simclrv1", color_jitter_strength=0.5)
    augment = builders.augment_config(config)
    assert augment.color_jitter_impl == "simclrv1" and augment.color_jitter_strength == 0.5
    assert builders.augment_config(Config(model_dir="/x")).color_jitter_impl == "simclrv2"
    with pytest.raises(ConfigError, match="--color_jitter_impl"):
        Config(model_dir="/x", color_jitter_impl="simclrv3").validate()


def _build(what: str, value: float):
    from tf_simclr.models import ProjectionHead, ResNet
    from tf_simclr.optim import LARS

    return {
        "ResNet": lambda: ResNet(18, batch_norm_decay=value),
        "ProjectionHead": lambda: ProjectionHead(batch_norm_decay=value),
        "LARS": lambda: LARS(0.1, momentum=value),
    }[what]()


@pytest.mark.parametrize(
    "flag, bad, library",
    [
        # The config and the layers once disagreed: [0, 1) vs [0, 1].
        ("batch_norm_decay", 1.0, "ResNet"),
        ("batch_norm_decay", 1.0, "ProjectionHead"),
        # Once unchecked by the config: a traceback from LARS instead of one line.
        ("momentum", 1.5, "LARS"),
        ("momentum", float("nan"), "LARS"),
    ],
)
def test_the_config_and_the_library_refuse_the_same_values(flag, bad, library):
    with pytest.raises(ConfigError, match=f"^--{flag}: must be "):
        Config(model_dir="/tmp/run", dataset="cifar10").replace(**{flag: bad}).validate()
    with pytest.raises(ValueError, match=flag):
        _build(library, bad)


def test_a_negative_shuffle_buffer_is_refused_not_made_1():
    from tf_simclr.data import AugmentConfig, DataError, Source, pretrain_dataset

    with pytest.raises(ConfigError, match="^--shuffle_buffer: must be >= 0, got -1"):
        Config(model_dir="/tmp/run", dataset="cifar10", shuffle_buffer=-1).validate()
    source = Source(
        None, num_examples=4, num_classes=2, class_names=("a", "b"), name="toy", split="t"
    )
    with pytest.raises(DataError, match="^shuffle_buffer=-1: must be >= 0"):
        pretrain_dataset(source, AugmentConfig(image_size=8), 2, shuffle_buffer=-1)


def test_every_bound_names_a_config_field():
    from tf_simclr.choices import BOUNDS

    fields = {name for name, *_ in flag_specs()}
    assert set(BOUNDS) <= fields, set(BOUNDS) - fields
