"""tf_simclr.flagfiles: flag files and --name=value arguments -> Config, as absl reads them."""

import pytest

from tf_simclr import flagfiles
from tf_simclr.config import Config, ConfigError


def test_read_flagfile_comments_nesting_and_order(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.flags").write_text(
        "# a comment\n\n// another\n--seed=1\n--use_blur=true\n--temperature=0.5\n"
    )
    # The nested path is relative to the file that names it, not to the working directory.
    (tmp_path / "sub" / "arm.flags").write_text(
        "--seed=7\n  --flagfile=base.flags  \n--temperature=0.2\n--nouse_blur\n--cache_dataset\n"
    )
    values = flagfiles.read_flagfile(str(tmp_path / "sub" / "arm.flags"))
    # Later lines win, wherever the earlier value came from.
    assert values == {
        "seed": "1",
        "use_blur": "false",
        "temperature": "0.2",
        "cache_dataset": "true",
    }
    config = flagfiles.config_from_flags(values)
    assert (config.seed, config.use_blur, config.temperature, config.cache_dataset) == (
        1,
        False,
        0.2,
        True,
    )
    assert flagfiles.load(str(tmp_path / "sub" / "arm.flags"), {"seed": "3"}).seed == 3


def test_values_from_args(tmp_path):
    (tmp_path / "a.flags").write_text("--seed=1\n--dataset=cifar10\n")
    args = [f"--flagfile={tmp_path / 'a.flags'}", "--seed", "2", "--use_blur", "--model_dir=/m"]
    assert flagfiles.values_from_args(args) == {
        "seed": "2",
        "dataset": "cifar10",
        "use_blur": "true",
        "model_dir": "/m",
    }
    assert flagfiles.values_from_args(["--flagfile=a.flags"], str(tmp_path))["seed"] == "1"
    with pytest.raises(ConfigError, match="expected --name=value"):
        flagfiles.values_from_args(["stray"])


@pytest.mark.parametrize(
    "text, value",
    [("true", True), ("True", True), ("1", True), ("t", True), ("false", False), ("0", False)],
)
def test_booleans_parse_like_absl(text, value):
    assert flagfiles.config_from_flags({"use_blur": text}).use_blur is value


def test_bad_names_values_and_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^--no_such_flag: is not a run.py flag$"):
        flagfiles.config_from_flags({"no_such_flag": "1"})
    with pytest.raises(ConfigError, match=r"--use_blur=yes: expects true or false"):
        flagfiles.config_from_flags({"use_blur": "yes"})
    with pytest.raises(ConfigError, match=r"--train_epochs=1.5: expects int"):
        flagfiles.config_from_flags({"train_epochs": "1.5"})
    with pytest.raises(ConfigError, match="--flagfile=.*missing.flags.*cannot be read"):
        flagfiles.read_flagfile(str(tmp_path / "missing.flags"))
    (tmp_path / "loop.flags").write_text("--flagfile=loop.flags\n")
    with pytest.raises(ConfigError, match="includes itself"):
        flagfiles.read_flagfile(str(tmp_path / "loop.flags"))
    (tmp_path / "bad.flags").write_text("# ok\nseed=1\n")
    with pytest.raises(ConfigError, match="line 2 is not a --name=value flag"):
        flagfiles.read_flagfile(str(tmp_path / "bad.flags"))


def test_defaults_stay_defaults():
    assert flagfiles.config_from_flags({}) == Config()
