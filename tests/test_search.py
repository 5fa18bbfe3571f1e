"""Student search under a device budget (keras_distill.search, keras-distill search)."""

import json
import os

import numpy as np
import pytest

from keras_distill import cli, search, targets
from keras_distill.search import Candidate, Spec

#: The default student (presets.student_cnn, width 8) on digits: parameters and int8 bytes.
DEFAULT_PARAMS = 3818


def test_the_cnn_family_holds_the_default_student():
    from keras_distill.presets import student_cnn

    spec = Spec("student_cnn", 8, 2, 1)
    model = spec.build((8, 8, 1), 10)
    preset = student_cnn((8, 8, 1), 10)
    assert model.count_params() == preset.count_params() == DEFAULT_PARAMS
    assert [type(layer).__name__ for layer in model.layers] == \
        [type(layer).__name__ for layer in preset.layers]
    # half resolution: the convolutions see 4x4 inputs (weights the same, MACs a quarter)
    pooled = Spec("student_cnn", 8, 2, 2).build((8, 8, 1), 10)
    assert pooled.get_layer("downsample").output.shape[1:3] == (4, 4)


def test_the_grid_of_each_input_kind():
    image = search.candidates((8, 8, 1), widths={"student_cnn": (2, 4)},
                              depths={"student_cnn": (1, 2)})
    assert [s.name for s in image] == [
        "student_cnn-w2-d1-r1", "student_cnn-w2-d1-r2", "student_cnn-w2-d2-r1",
        "student_cnn-w2-d2-r2", "student_cnn-w4-d1-r1", "student_cnn-w4-d1-r2",
        "student_cnn-w4-d2-r1", "student_cnn-w4-d2-r2"]
    vectors = search.candidates((30,))
    assert {s.family for s in vectors} == {"student_mlp"}
    assert all(s.resolution == 1 for s in vectors)
    assert len(vectors) == len(search.WIDTHS["student_mlp"]) * len(search.DEPTHS["student_mlp"])
    with pytest.raises(ValueError, match="needs the teacher"):
        search.candidates((8, 8, 1), families=["shrink"])
    with pytest.raises(ValueError, match="Unknown families"):
        search.candidates((8, 8, 1), families=["resnet"])


def test_the_front_is_the_fitting_candidates_nothing_beats():
    def cand(width, accuracy, arena, size, fits=True):
        c = Candidate(Spec("student_cnn", width, 2), arena=arena, int8_bytes=size,
                      fit={"fits": fits}, proxy_accuracy=accuracy, status="proxy")
        return c
    a = cand(1, 0.90, 3000, 5000)
    b = cand(2, 0.95, 4000, 9000)   # more accurate, larger: on the front
    c = cand(3, 0.89, 3000, 6000)   # a is as small and better: dominated
    d = cand(4, 0.99, 1000, 1000, fits=False)  # best of all, but does not fit
    e = cand(5, 0.90, 3000, 5000)   # the same as a: neither beats the other
    search._mark_front([a, b, c, d, e])
    assert [x.on_front for x in (a, b, c, d, e)] == [True, True, False, False, True]


@pytest.fixture(scope="module")
def tiny():
    # room for TFLite Micro with student_cnn's ops, and a model of 6 KiB: the default student
    # (7,920 int8 bytes) does not fit
    from keras_distill import footprint

    ops = ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"]
    return targets.Target("tiny", "a test device",
                          ram=footprint.static_ram(None, ops)["bytes"] + 8 * 1024,
                          flash=footprint.code_size(ops)["bytes"] + 6 * 1024, source="test")


@pytest.mark.slow
def test_a_tiny_target_gets_a_smaller_student_that_fits_and_a_rerun_trains_nothing(
        trained_teacher, digits, tiny, tmp_path):
    from keras_distill.verify import micro

    if not micro.runtime_available():
        pytest.skip("tflite-micro is not installed: arenas are not measured")
    lines = []
    kwargs = {"out_dir": tmp_path, "families": ["student_cnn"],
              "widths": {"student_cnn": (2, 4, 8)}, "depths": {"student_cnn": (2,)},
              "resolutions": (1,), "proxy_epochs": 3, "epochs": 6, "max_final": 2,
              "log": lines.append}
    result = search.search(trained_teacher, digits, tiny, **kwargs)
    by_name = {c.name: c for c in result.candidates}
    default = by_name["student_cnn-w8-d2-r1"]
    # measured before training, refused, never trained
    assert default.fit["flash_needed"] > tiny.flash and default.status == "too_big"
    assert default.proxy_accuracy is None and default.final_accuracy is None
    chosen = result.chosen
    assert chosen is not None and chosen.params < DEFAULT_PARAMS
    assert chosen.name == "student_cnn-w4-d2-r1"  # the larger of the two that fit
    # what is flashed fits, as measured on the exported files
    d = result.deployed
    assert d["fit"]["fits"] and d["fit"]["flash_needed"] <= tiny.flash
    assert d["fit"]["ram_needed"] <= tiny.ram and d["arena"] < d["fit"]["ram_needed"]
    manifest = json.loads((tmp_path / "exported" / "manifest.json").read_text())
    chip = next(a for a in manifest["artifacts"] if a["format"] == "micro")
    # measured before training with distinct weights: the trained model is no larger (the
    # converter may share identical constant buffers of a trained model, never more)
    assert chip["size_bytes"] == d["model_bytes"] <= chosen.int8_bytes
    assert chip["details"]["arena"]["arena_size"] == d["arena"] == chosen.arena
    assert chip["details"]["target"]["fits"]
    for name in ("search.json", "search.md", "front.png"):
        assert os.path.isfile(tmp_path / name)
    table = (tmp_path / "search.md").read_text()
    assert "student_cnn-w4-d2-r1 (chosen)" in table and "too_big" in table
    assert any(line.startswith("[3/3] student_cnn-w8-d2-r1") and "does not fit" in line
               for line in lines), lines

    # resumed: the same result, and no candidate trains again
    again = []
    kwargs["log"] = again.append
    second = search.search(trained_teacher, digits, tiny, **kwargs)
    assert again[0].startswith("Resuming the search") and not any(
        line.startswith("Final distillation") for line in again)
    assert [c.to_dict() for c in second.candidates] == [c.to_dict() for c in
                                                        result.candidates]
    assert second.chosen.name == chosen.name
    # other settings in the same folder: refused, not mixed
    with pytest.raises(ValueError, match="other settings"):
        search.search(trained_teacher, digits, tiny, **{**kwargs, "epochs": 7})


@pytest.mark.slow
def test_nothing_is_exported_when_nothing_fits(trained_teacher, digits, tmp_path):
    target = targets.Target("speck", "a device too small", ram=512, flash=64 * 1024,
                            source="test")
    result = search.search(trained_teacher, digits, target, out_dir=tmp_path,
                           families=["student_cnn"], widths={"student_cnn": (2,)},
                           depths={"student_cnn": (1,)}, resolutions=(1,), proxy_epochs=1,
                           epochs=1, log=lambda _: None)
    assert result.chosen is None and result.deployed is None
    assert all(c.status == "too_big" and c.proxy_accuracy is None for c in result.candidates)
    assert not os.path.exists(tmp_path / "exported")
    assert "No candidate fits" in (tmp_path / "search.md").read_text()


def test_search_without_a_target_says_how_to_name_one(capsys, tmp_path):
    code = cli.main(["search", "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "--target NAME" in err and "nrf52840" in err


def test_search_of_a_task_it_does_not_support_is_refused(capsys, tmp_path):
    code = cli.main(["search", "--target", "nrf52840", "--data", "diabetes", "--out-dir",
                     str(tmp_path), "--teacher-epochs", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "multiclass" in err, err


@pytest.mark.slow
def test_the_command_line_search_writes_the_chosen_export(capsys, tmp_path):
    from keras_distill.verify import micro

    if not micro.runtime_available():
        pytest.skip("tflite-micro is not installed: arenas are not measured")
    code = cli.main(["search", "--target", "cortex-m4-256k", "--out-dir", str(tmp_path),
                     "--teacher-epochs", "3", "--proxy-epochs", "1", "--epochs", "2",
                     "--max-accuracy-drop", "0.05", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Chosen: " in out and "fits cortex-m4-256k" in out
    record = json.loads((tmp_path / "search.json").read_text())
    chosen = next(c for c in record["candidates"] if c["name"] == record["chosen"])
    assert chosen["status"] == "final" and chosen["fit"]["fits"]
    assert record["deployed"]["fit"]["fits"]
    manifest = json.loads((tmp_path / "exported" / "manifest.json").read_text())
    assert manifest["settings"]["max_accuracy_drop"] == 0.05
    assert np.isfinite(chosen["final_accuracy"])


def test_what_is_flashed_is_the_model_the_budget_chose():
    from keras_distill.export.artifacts import Artifact, ExportReport

    fit = {"fits": True}

    def chip(mode, size):
        return Artifact("micro", mode, path=f"student_{mode}_model_data.cc", size_bytes=size,
                        details={"arena": {"arena_size": 4096}, "target": fit})
    budget = {"mode": "int8_mixed", "within_budget": True}
    report = ExportReport("student", "out", artifacts=[
        Artifact("tflite", "int8", details={"budget": budget}), chip("int8", 5000),
        Artifact("tflite", "int8_mixed"), chip("int8_mixed", 6000)])
    d = search._deployed(report, "nrf52840")
    assert (d["mode"], d["file"], d["model_bytes"]) == ("int8_mixed",
                                                        "student_int8_mixed_model_data.cc", 6000)
    assert d["within_budget"] is True
    # without a budget: the int8 C source
    plain = ExportReport("student", "out", artifacts=[Artifact("tflite", "int8"),
                                                      chip("int8", 5000)])
    assert search._deployed(plain, "nrf52840")["mode"] == "int8"
    # the budget's model has no C source (TFLM cannot run it): nothing to flash
    failed = ExportReport("student", "out", artifacts=[
        Artifact("tflite", "int8", details={"budget": budget}), chip("int8", 5000),
        Artifact("micro", "int8_mixed", status="failed", error="no kernel")])
    assert search._deployed(failed, "nrf52840") is None
