"""The tf_simclr command line (`tf_simclr/cli.py`; `tf-simclr` once the package is installed)."""

from tf_simclr.cli import FLAGS, config_from_flags, main, parse_flags, run  # noqa: F401

if __name__ == "__main__":
    run()
