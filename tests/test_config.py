"""keras_distill.config: the TOML schema, its error messages and the flag mapping."""

import os

import pytest
import tomllib

from keras_distill import config
from keras_distill.config import SCHEMA, ConfigError, flag_name, load


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults_are_the_default_run():
    cfg = load()
    assert cfg["epochs"] == 30 and cfg["batch_size"] == 64 and cfg["seed"] == 0
    assert cfg["temperature"] == 4.0 and cfg["alpha"] == 0.1
    assert cfg["losses"] == [{"name": "soft_target_kl"}]
    assert cfg["formats"] == ["tflite", "onnx", "micro"]
    # the library's export() defaults: int16x8 is opt-in
    assert cfg["quantization"] == ["float32", "float16", "dynamic", "int8"]
    assert cfg["data.source"] == "digits" and cfg["out_dir"] == "exported"
    assert cfg["teacher.model"] == "teacher_cnn" and cfg["student.model"] == "student_cnn"
    assert cfg.teacher_epochs() == 20
    assert all(cfg.origin(p) == "default" for p in SCHEMA)


def test_example_toml_lists_every_key_and_loads_to_the_defaults(tmp_path):
    text = config.example_toml()
    for path in SCHEMA:
        assert path.rpartition(".")[2] in text
    cfg = load(write(tmp_path, text)).to_dict()
    defaults = load().to_dict()
    assert cfg.pop("out_dir") == str(tmp_path / "exported")  # relative to the file
    defaults.pop("out_dir")
    assert cfg == defaults


def test_file_values_and_flags_override_in_order(tmp_path):
    path = write(tmp_path, """
epochs = 7
temperature = 2.5
losses = ["kl", "logit_mse"]
loss_weights = [1, 0.5]
[teacher]
epochs = 3
preset_args = {width = 16}
""")
    cfg = load(path, {"epochs": "9", "alpha": "0.5"})
    assert cfg["epochs"] == 9 and cfg.origin("epochs") == "--epochs"
    assert cfg["temperature"] == 2.5 and cfg.origin("temperature") == path
    assert cfg["alpha"] == 0.5
    assert cfg["losses"] == [{"name": "kl"}, {"name": "logit_mse"}]
    assert cfg["loss_weights"] == [1.0, 0.5]
    assert cfg["teacher.epochs"] == 3 and cfg["teacher.preset_args"] == {"width": 16}
    assert cfg.origin("seed") == "default"


@pytest.mark.parametrize("text, key, allowed", [
    ("alpha = 1.5", "alpha", "a number in [0, 1]"),
    ("temperature = 0", "temperature", "a number > 0"),
    ("epochs = 0", "epochs", "an integer >= 1"),
    ("epochs = 2.5", "epochs", "an integer >= 1"),
    ("batch_size = true", "batch_size", "an integer >= 1"),
    ('formats = ["tflite", "coreml"]', "formats", "'tflite', 'onnx', 'micro'"),
    ("quantization = []", "quantization", "'float32', 'float16', 'dynamic', 'int8', 'int16x8'"),
    ('losses = ["kld"]', "losses", "'soft_target_kl'"),
    ('export_student = "best"', "export_student", "'auto', 'distilled', 'baseline'"),
    ('quiet = "yes"', "quiet", "true or false"),
    ('[data]\nsource = "imagenet"', "data.source",
     "'digits', 'breast_cancer', 'diabetes', a keras.datasets name"),
    ('task = "classification"', "task",
     "one of 'auto', 'multiclass', 'binary', 'multilabel', 'regression'"),
    ('[data]\ncolor_mode = "cmyk"', "data.color_mode", "'grayscale', 'rgb', 'rgba'"),
    ("[data]\nimage_size = [32]", "data.image_size", "a list of two integers >= 1"),
    ('[teacher]\nmodel = "resnet50"', "teacher.model", "'teacher_cnn', 'student_cnn'"),
    ("[teacher]\nepochs = -1", "teacher.epochs", "an integer >= 0"),
    ("prune = 1", "prune", "a number in [0, 1)"),
    ("prune = -0.5", "prune", "a number in [0, 1)"),
    ("qat = 1", "qat", "true or false"),
    ("qat_epochs = 0", "qat_epochs", "an integer >= 1"),
    ("qat_learning_rate = 0", "qat_learning_rate", "a number > 0"),
    ('cache_teacher = "yes"', "cache_teacher", "true or false"),
    ('[teacher]\nmodels = ["teacher_cnn"]', "teacher.models",
     "a list of two or more teachers, each a preset name ('teacher_cnn'"),
    ('[teacher]\nmodels = ["teacher_cnn", "gone.keras"]', "teacher.models",
     "the path of an existing .keras file (file not found: "),
    ('[teacher]\nmodels = ["teacher_cnn", "teacher_cnn"]\nweights = [1, -1]', "teacher.weights",
     "a list of numbers >= 0, not all 0, one per teacher"),
    ('[teacher]\nmodels = ["teacher_cnn", "teacher_cnn"]\nweights = [0, 0]', "teacher.weights",
     "not all 0"),
    ('[teacher]\naverage = "median"', "teacher.average", "one of 'probabilities', 'logits'"),
    ("[student]\nfrom_teacher = {width = 0}", "student.from_teacher",
     "width a number in (0, 1]"),
    ("[student]\nfrom_teacher = {width = 0.5, depth = 0}", "student.from_teacher",
     "depth an integer >= 1 or a fraction in (0, 1]"),
    ('[student]\nfrom_teacher = {transfer = "copy"}', "student.from_teacher",
     "transfer one of 'select', 'first', 'none'"),
    ("[student]\nfrom_teacher = {size = 2}", "student.from_teacher",
     "a table such as {width = 0.25, transfer = \"select\"}"),
    ('[student]\nfrom_teacher = "teacher.keras"', "student.from_teacher", "a table such as"),
])
def test_bad_value_names_key_allowed_values_and_file(tmp_path, text, key, allowed):
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key} = ")
    assert allowed in message
    assert info.value.key == key and info.value.where == path and not info.value.usage


def test_unknown_key_lists_allowed_keys_and_suggests(tmp_path):
    path = write(tmp_path, "temprature = 3\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert path in message and "'temprature'" in message
    assert "Did you mean 'temperature'?" in message
    for key in ("alpha", "epochs", "out_dir", "[teacher]"):
        assert key in message

    path = write(tmp_path, "[teacher]\nwidth = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'teacher.width' in \[teacher\]; "
                                          r"allowed keys: allow_weak, average, epochs, "
                                          r"learning_rate, model, models, preset_args, "
                                          r"weights\."):
        load(path)


def test_no_key_is_reserved_any_more(tmp_path):
    assert config.RESERVED == {}
    cfg = load(write(tmp_path, """
qat = true
qat_epochs = 2
prune = 0.5
cache_teacher = true
[teacher]
models = ["teacher_cnn", "student_cnn"]
weights = [2, 1]
average = "logits"
[student]
from_teacher = {width = 0.25, depth = 1}
"""))
    assert cfg["qat"] is True and cfg["qat_epochs"] == 2 and cfg["qat_learning_rate"] is None
    assert cfg["prune"] == 0.5 and cfg["cache_teacher"] is True
    assert cfg["teacher.models"] == ["teacher_cnn", "student_cnn"]
    assert cfg.teacher_refs() == ["teacher_cnn", "student_cnn"]
    assert cfg["teacher.weights"] == [2.0, 1.0] and cfg["teacher.average"] == "logits"
    # defaults filled in: transfer by weight selection
    assert cfg["student.from_teacher"] == {"width": 0.25, "transfer": "select", "depth": 1}
    assert [cfg.teacher_epochs(r) for r in cfg.teacher_refs()] == [20, 20]
    defaults = load()
    assert (defaults["qat"], defaults["prune"], defaults["cache_teacher"]) == (False, 0.0, False)
    assert defaults["teacher.models"] is None and defaults["student.from_teacher"] is None
    assert defaults.teacher_refs() == ["teacher_cnn"]


def test_new_flags_parse():
    cfg = load(None, {"qat": True, "prune": "0.75", "qat_epochs": "3",
                      "qat_learning_rate": "1e-4", "teacher.models": "teacher_cnn,student_cnn",
                      "teacher.weights": "1,3", "teacher.average": "logits",
                      "cache_teacher": True})
    assert (cfg["qat"], cfg["prune"], cfg["qat_epochs"], cfg["qat_learning_rate"]) == (
        True, 0.75, 3, 1e-4)
    assert cfg["teacher.models"] == ["teacher_cnn", "student_cnn"]
    assert cfg["teacher.weights"] == [1.0, 3.0] and cfg.origin("teacher.weights") == \
        "--teacher-weights"
    with pytest.raises(ConfigError) as info:
        load(None, {"prune": "half"})
    assert str(info.value) == '--prune: prune = "half" is not allowed; expected a number in ' \
                              "[0, 1)." and info.value.usage


def test_keys_that_exclude_each_other(tmp_path):
    (tmp_path / "t.keras").write_bytes(b"")
    cases = [
        ('[teacher]\nmodel = "t.keras"\nmodels = ["teacher_cnn", "teacher_cnn"]\n',
         "teacher.models", "teacher.model = \"" + str(tmp_path / "t.keras") + "\" and "
         "teacher.models = [\"teacher_cnn\", \"teacher_cnn\"] exclude each other"),
        ("[teacher]\nweights = [1, 2]\n", "teacher.weights",
         ("teacher.weights = [1.0, 2.0] only applies to an ensemble of teachers; set "
         "teacher.models")),
        ('[teacher]\naverage = "logits"\n', "teacher.average",
         "teacher.average = \"logits\" only applies to an ensemble"),
        ('[teacher]\nmodels = ["teacher_cnn", "teacher_cnn"]\nweights = [1]\n',
         "teacher.weights", ("teacher.weights has 1 weight(s) but teacher.models has 2 "
         "teacher(s)")),
        ('[student]\nmodel = "student_mlp"\nfrom_teacher = {width = 0.5}\n',
         "student.from_teacher", ("student.from_teacher = {width = 0.5, transfer = \"select\"} "
         "and student.model = \"student_mlp\" exclude each other")),
        ("[student]\npreset_args = {width = 4}\nfrom_teacher = {width = 0.5}\n",
         "student.from_teacher", "and student.preset_args = {width = 4} exclude each other"),
        ('[teacher]\nmodels = ["t.keras", "t.keras"]\npreset_args = {width = 8}\n',
         "teacher.preset_args", ("teacher.preset_args only applies to a preset, but every "
         "teacher of teacher.models is a file")),
        ('[teacher]\nmodels = ["teacher_cnn", "t.keras"]\npreset_args = {units = 8}\n',
         "teacher.preset_args", "has 'units', which preset 'teacher_cnn' does not take"),
    ]
    for text, key, message in cases:
        path = write(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            load(path)
        assert str(info.value).startswith(f"{path}: "), str(info.value)
        assert message in str(info.value), str(info.value)
        assert info.value.key == key and not info.value.usage
    # on the command line, the same mistake is a usage error naming the flag
    with pytest.raises(ConfigError, match="^--teacher-weights: teacher.weights") as info:
        load(None, {"teacher.weights": "1,2"})
    assert info.value.usage
    # the default values of the excluded keys (as config.toml writes them) are fine
    cfg = load(None, {"teacher.models": "teacher_cnn,student_cnn"})
    again = load(write(tmp_path, cfg.to_toml(), "again.toml"))
    assert again.flat(absolute_paths=True) == cfg.flat(absolute_paths=True)


def test_ensemble_and_shrink_keys_round_trip_with_paths(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "t1.keras").write_bytes(b"")
    path = write(tmp_path, """
[teacher]
models = ["models/t1.keras", "teacher_cnn"]
weights = [1, 1]
[student]
from_teacher = {width = 0.5, transfer = "none"}
""")
    cfg = load(path)
    assert cfg["teacher.models"] == [str(tmp_path / "models" / "t1.keras"), "teacher_cnn"]
    assert cfg.teacher_refs()[0].endswith("t1.keras")
    assert [cfg.teacher_epochs(r) for r in cfg.teacher_refs()] == [0, 20]
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    again = load(write(sub, cfg.to_toml(), "again.toml"))
    assert again.flat(absolute_paths=True) == cfg.flat(absolute_paths=True)
    assert again["student.from_teacher"] == {"width": 0.5, "transfer": "none"}
    # relative flag paths are compared absolute (what --resume checks)
    monkeypatch.chdir(tmp_path)
    flagged = load(None, {"teacher.models": "models/t1.keras,teacher_cnn"})
    assert flagged.flat(absolute_paths=True)["teacher.models"] == cfg["teacher.models"]


def test_invalid_toml_and_missing_file_name_the_file(tmp_path):
    path = write(tmp_path, "epochs = = 3\n")
    with pytest.raises(ConfigError, match=f"{path}: not valid TOML"):
        load(path)
    with pytest.raises(ConfigError, match="config file not found: .*nope.toml"):
        load(str(tmp_path / "nope.toml"))


def test_shorthand_tables_and_paths_relative_to_the_file(tmp_path):
    sub = tmp_path / "conf"
    sub.mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "t.keras").write_bytes(b"")
    (tmp_path / "d.npz").write_bytes(b"")
    path = write(sub, 'data = "../d.npz"\nteacher = "../models/t.keras"\nstudent = "student_mlp"\n'
                      'out_dir = "out"\n')
    cfg = load(path)
    assert cfg["data.source"] == str(tmp_path / "d.npz")
    assert cfg["teacher.model"] == str(tmp_path / "models" / "t.keras")
    assert cfg["student.model"] == "student_mlp"
    assert cfg["out_dir"] == str(sub / "out")
    assert cfg.teacher_epochs() == 0  # a teacher file is used as it is
    # flags are relative to the current folder, and a missing file is named
    with pytest.raises(ConfigError, match=r"--teacher: teacher.model = .*file not found"):
        load(None, {"teacher.model": "missing.keras"})


def test_flag_values_are_parsed_and_bad_ones_are_usage_errors():
    cfg = load(None, {"formats": "tflite,micro", "quantization": "int8", "epochs": "3",
                      "data.image_size": "16,16", "quiet": True})
    assert cfg["formats"] == ["tflite", "micro"] and cfg["quantization"] == ["int8"]
    assert cfg["epochs"] == 3 and cfg["data.image_size"] == [16, 16] and cfg["quiet"] is True
    assert load(None, {"formats": ""})["formats"] == []  # no export
    with pytest.raises(ConfigError) as info:
        load(None, {"epochs": "ten"})
    assert str(info.value) == "--epochs: epochs = \"ten\" is not allowed; expected an " \
                              "integer >= 1."
    assert info.value.usage


def test_losses_as_tables(tmp_path):
    path = write(tmp_path, """
losses = ["soft_target_kl", {name = "feature_hint", teacher_layer = "relu3", student_layer = "conv2"},
          {name = "dkd", beta = 4}]
loss_weights = [1, 0.5, 1]
""")
    cfg = load(path)
    assert cfg["losses"][1] == {"name": "feature_hint", "teacher_layer": "relu3",
                                "student_layer": "conv2"}
    assert cfg["losses"][2] == {"name": "dkd", "beta": 4.0}
    with pytest.raises(ConfigError, match="a table for 'feature_hint'"):
        load(None, {"losses": "feature_hint"})
    with pytest.raises(ConfigError, match="for loss 'kl', only the arguments temperature"):
        load(write(tmp_path, 'losses = [{name = "kl", beta = 2}]\n'))


def test_losses_from_config_build_the_loss_objects(tmp_path):
    from keras_distill import losses
    from keras_distill.pipeline.models import losses_of

    cfg = load(write(tmp_path, 'losses = ["kl", {name = "feature_hint", teacher_layer = "relu3",'
                               ' student_layer = "conv2"}, {name = "decoupled_kd", beta = 4}]\n'))
    built = losses_of(cfg)
    assert [type(x) for x in built] == [losses.SoftTargetKL, losses.FeatureHint,
                                        losses.DecoupledKD]
    assert (built[1].teacher_layer, built[1].student_layer) == ("relu3", "conv2")
    assert built[2].beta == 4.0


def test_checks_across_keys(tmp_path):
    with pytest.raises(ConfigError, match="loss_weights has 2 weight.* but losses has 1"):
        load(write(tmp_path, "loss_weights = [1, 2]\n"))
    with pytest.raises(ConfigError, match="leaves no training data"):
        load(None, {"data.validation_fraction": "0.5", "data.test_fraction": "0.5"})
    with pytest.raises(ConfigError, match=r"has 'units', which preset 'student_cnn' does not "
                                          r"take; allowed: width"):
        load(write(tmp_path, "[student]\npreset_args = {units = 3}\n"))
    (tmp_path / "s.keras").write_bytes(b"")
    with pytest.raises(ConfigError, match="student.preset_args only applies to a preset"):
        load(write(tmp_path, '[student]\nmodel = "s.keras"\npreset_args = {width = 3}\n'))


def test_to_toml_reproduces_the_config(tmp_path):
    cfg = load(write(tmp_path, """
epochs = 3
out_dir = "out"
losses = ["kl", {name = "feature_hint", teacher_layer = "relu3", student_layer = "conv2"}]
loss_weights = [1.0, 2.0]
formats = []
[data]
image_size = [8, 8]
[teacher]
preset_args = {width = 8, dropout = 0.1}
"""))
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    again = load(write(sub, cfg.to_toml(), "again.toml"))
    assert again.to_dict() == cfg.to_dict()  # out_dir was written absolute
    assert load(write(sub, cfg.to_toml(replace={"out_dir": "."}), "dot.toml"))["out_dir"] \
        == str(sub)
    assert tomllib.loads(cfg.to_toml())["teacher"]["preset_args"] == {"width": 8, "dropout": 0.1}


def test_flag_names_follow_one_rule():
    assert flag_name("out_dir") == "--out-dir"
    assert flag_name("teacher.epochs") == "--teacher-epochs"
    assert flag_name("data.test_fraction") == "--data-test-fraction"
    assert (flag_name("data.source"), flag_name("teacher.model"), flag_name("student.model")) \
        == ("--data", "--teacher", "--student")
    flags = [k.flag for k in SCHEMA.values()]
    assert len(flags) == len(set(flags))


def test_config_imports_only_the_standard_library():
    import subprocess
    import sys

    code = ("import sys, keras_distill.config as c, keras_distill.registry; c.load(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'keras', 'tensorflow', 'sklearn')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.strip() == "[]"


# --- the schema offers what the library has: its names come from the registry --------------


def test_the_schema_takes_its_names_and_defaults_from_the_registry():
    from keras_distill import registry

    for name in ("FORMATS", "QUANTIZATION_MODES", "DEFAULT_QUANTIZATION", "PRESET_ARGS",
                 "LOSS_ARGS", "KERAS_DATASETS", "EXPORT_STUDENT", "COLOR_MODES",
                 "TRANSFER_METHODS", "ENSEMBLE_AVERAGES", "COMMANDS", "TASKS"):
        assert getattr(config, name) is getattr(registry, name), name  # the same, no copy
    assert SCHEMA["quantization"].default == list(registry.DEFAULT_QUANTIZATION)
    assert SCHEMA["formats"].default == list(registry.FORMATS)
    assert load(None, {"quantization": ",".join(registry.QUANTIZATION_MODES)})[
        "quantization"] == list(registry.QUANTIZATION_MODES)
    for name, args in registry.LOSS_ARGS.items():
        spec = {"name": name, **{a: "relu3" for a in registry.REQUIRED_LOSS_ARGS.get(name, ())}}
        assert load(None, {"losses": [spec]})["losses"] == [spec], name
        assert f"only the arguments {', '.join(args) or '(none)'}" in str(
            pytest.raises(ConfigError, load, None, {"losses": [{**spec, "bogus": 1}]}).value)
    for preset, args in registry.PRESET_ARGS.items():
        cfg = load(None, {"teacher.model": preset, "teacher.preset_args": dict.fromkeys(args, 1)})
        assert cfg["teacher.model"] == preset
        assert f"allowed: {', '.join(args)}." in str(pytest.raises(
            ConfigError, load, None, {"teacher.model": preset,
                                      "teacher.preset_args": {"bogus": 1}}).value)
    for source in registry.BUNDLED_DATASETS + registry.KERAS_DATASETS:
        assert load(None, {"data.source": source})["data.source"] == source
    for task in registry.TASKS:
        assert load(None, {"task": task})["task"] == task
    assert SCHEMA["task"].default == registry.TASKS[0] == "auto"


def test_task_key_from_file_flag_and_example(tmp_path):
    key = SCHEMA["task"]
    assert (key.flag, key.default, key.help_section, key.commands) == (
        "--task", "auto", "data", ("run", "distill", "export", "evaluate", "search"))
    assert "auto: taken from the data" in key.help and "regression" in key.help
    assert load()["task"] == "auto"
    cfg = load(write(tmp_path, 'task = "regression"\ndata = "diabetes"\n'), {"seed": "1"})
    assert cfg["task"] == "regression" and cfg.origin("task").endswith("run.toml")
    assert cfg["data.source"] == "diabetes"  # a name, not a path next to the file
    flagged = load(None, {"task": "binary", "data.source": "breast_cancer"})
    assert flagged["task"] == "binary" and flagged.origin("task") == "--task"
    with pytest.raises(ConfigError) as info:
        load(None, {"task": "classification"})
    assert str(info.value) == ('--task: task = "classification" is not allowed; expected one '
                               "of 'auto', 'multiclass', 'binary', 'multilabel', "
                               "'regression'.") and info.value.usage
    assert 'task = "auto"  # what the model\'s output holds' in config.example_toml()
    assert tomllib.loads(config.example_toml())["task"] == "auto"
    again = load(write(tmp_path, flagged.to_toml(), "again.toml"))
    assert again["task"] == "binary" and again["data.source"] == "breast_cancer"
