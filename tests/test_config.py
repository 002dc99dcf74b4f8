import pytest

from batchml.config import ConfigError, build_config, load_config
from batchml.cli import job_parser


def test_defaults_load_from_local_yaml():
    cfg = load_config()
    assert cfg.spark.master == "local[*]"
    assert cfg.paths.data_dir == "data"
    assert 0 <= cfg.ingest.max_reject_fraction <= 1


def test_cluster_yaml_is_valid():
    from batchml.config import DEFAULT_CONF
    cfg = load_config(DEFAULT_CONF.parent / "cluster.yaml")
    assert cfg.spark.shuffle_partitions > 16


def test_overrides_are_typed():
    cfg = build_config({}, ["spark.shuffle_partitions=8", "ingest.remove_probe=true",
                            "ingest.max_reject_fraction=0.5", "spark.extra={spark.foo: bar}"])
    assert cfg.spark.shuffle_partitions == 8
    assert cfg.ingest.remove_probe is True
    assert cfg.ingest.max_reject_fraction == 0.5
    assert dict(cfg.spark.extra) == {"spark.foo": "bar"}


@pytest.mark.parametrize("override, named", [
    ("spark.shufle_partitions=8", "spark.shufle_partitions"),
    ("nosuchsection.x=1", "nosuchsection"),
    ("spark.shuffle_partitions=abc", "spark.shuffle_partitions"),
    ("spark.shuffle_partitions=0", "spark.shuffle_partitions"),
    ("ingest.max_reject_fraction=1.5", "ingest.max_reject_fraction"),
    ("ingest.remove_probe=maybe", "ingest.remove_probe"),
    ("spark.log_level=LOUD", "spark.log_level"),
])
def test_invalid_settings_fail_naming_the_key(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        build_config({}, [override])


def test_unknown_key_in_file_fails(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("spark:\n  master: local[2]\n  colour: blue\n")
    with pytest.raises(ConfigError, match=r"spark\.colour"):
        load_config(p)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("spark: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_config_is_frozen():
    cfg = build_config({})
    with pytest.raises(Exception):
        cfg.spark.master = "x"  # type: ignore[misc]


def test_job_main_exits_2_on_bad_setting(capsys):
    from jobs_loader import load_job
    ingest = load_job("ingest")
    code = ingest.main(["--format", "netflix", "--input", "x", "--output", "y",
                        "--set", "ingest.max_reject_fraction=2"])
    assert code == 2
    assert "ingest.max_reject_fraction" in capsys.readouterr().err


def test_every_job_has_help():
    parser = job_parser("x")
    assert "--conf" in parser.format_help() and "--set" in parser.format_help()
