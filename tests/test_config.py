import pytest

from batchml.config import ConfigError, build_config, load_config
from batchml.cli import job_parser


def test_defaults_load_from_local_yaml():
    cfg = load_config()
    assert cfg.spark.master == "local[*]"
    assert cfg.spark.checkpoint_dir == "data/checkpoints"
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


@pytest.mark.parametrize("name", ["local.yaml", "cluster.yaml"])
def test_yaml_holds_only_what_differs_from_the_defaults(name):
    import yaml
    from batchml.config import DEFAULT_CONF, as_dict
    defaults = as_dict(build_config({}))
    data = yaml.safe_load((DEFAULT_CONF.parent / name).read_text()) or {}
    for section, values in data.items():
        for key, value in values.items():
            typed = as_dict(build_config({section: {key: value}}))[section][key]
            assert typed != defaults[section][key], f"{name}: {section}.{key} repeats the default"


def test_set_values_are_typed_by_the_field_not_yaml_parsed():
    cfg = build_config({}, ["factorize.test=data/tests #2", "factorize.ranks=5,20",
                            "factorize.regs=[0.01, 0.1]", "spark.app_name=007"])
    assert cfg.factorize.test == "data/tests #2"
    assert cfg.factorize.ranks == (5, 20)
    assert cfg.factorize.regs == (0.01, 0.1)
    assert cfg.spark.app_name == "007"


def test_flag_is_an_alias_of_its_setting_and_checked_the_same():
    from batchml.cli import Flag, load_job_config
    flags = (Flag("--size", "tumor.size", "px"), Flag("--test", "factorize.test", "spec"),
             Flag("--exact", "similarity.exact", "no cap", const="true"))
    parser = job_parser("x", flags)
    cfg = load_job_config(parser.parse_args(["--size", "64", "--test", "d #2", "--exact",
                                             "--set", "tumor.size=32"]))
    assert (cfg.tumor.size, cfg.factorize.test, cfg.similarity.exact) == (64, "d #2", True)
    for argv in (["--size", "0"], ["--set", "tumor.size=0"]):
        with pytest.raises(ConfigError, match=r"tumor\.size"):
            load_job_config(parser.parse_args(argv))


@pytest.mark.parametrize("spec", ["random:abc", "random:1.5", "temporal:0", ""])
def test_bad_test_spec_is_refused_when_set(spec):
    with pytest.raises(ConfigError, match=r"factorize\.test"):
        build_config({}, [f"factorize.test={spec}"])


def test_set_reaches_a_dotted_key_of_a_mapping():
    cfg = build_config({"spark": {"extra": {"spark.serializer": "x"}}},
                       ["spark.extra.spark.eventLog.enabled=true", "spark.extra.spark.ui.showConsoleProgress=True"])
    assert dict(cfg.spark.extra) == {"spark.serializer": "x", "spark.eventLog.enabled": "true",
                                     "spark.ui.showConsoleProgress": "True"}
