"""Named device targets (keras_distill.targets) and the export's fit check."""

import numpy as np
import pytest

from keras_distill import targets


def test_every_target_has_its_numbers_and_a_source():
    for name, target in targets.TARGETS.items():
        assert target.name == name and target.source
        assert (target.ram is None) == (target.flash is None) == (name == "android-cpu")
    assert targets.TARGETS["nrf52840"].ram == 256 * 1024
    assert targets.TARGETS["nrf52840"].flash == 1024 * 1024


def test_fit_margins_and_what_is_not_counted():
    fit = targets.fit({"arena_size": 6000, "model_bytes": 20000}, "rp2040")
    assert fit["fits"] and fit["ram_margin"] == 264 * 1024 - 6000
    assert fit["flash_margin"] == 2 * 1024 * 1024 - 20000
    assert "not counted" in fit["not_counted"]
    over = targets.fit({"arena_size": 300 * 1024, "model_bytes": 20000}, "nrf52840")
    assert not over["fits"] and over["ram_margin"] == (256 - 300) * 1024
    assert targets.fit({"arena_size": 10**9, "model_bytes": 10**9}, "android-cpu")["fits"]
    with pytest.raises(ValueError, match="Unknown target 'nrf5'.*nrf52840"):
        targets.get("nrf5")


@pytest.mark.slow
def test_a_target_smaller_than_the_measured_arena_does_not_fit(tmp_path):
    from keras_distill.export import export
    from keras_distill.presets import student_cnn
    from keras_distill.verify import micro

    if not micro.runtime_available():
        pytest.skip("tflite-micro is not installed: the arena is not measured")
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")
    tiny = targets.Target("tiny", "a test device", ram=1024, flash=1024 * 1024, source="test")
    report = export(student_cnn(), tmp_path, formats=("micro",), quantization=("int8",),
                    representative_data=x, target=tiny)
    chip = report.get("micro", "int8")
    assert chip.ok, chip.error
    arena = chip.details["arena"]["arena_size"]
    assert arena > 1024
    # multiply-accumulates per inference, by hand: conv1 8·8·8·(3·3·1), conv2 4·4·16·(3·3·8),
    # logits 256·10
    assert chip.details["macs"] == 8 * 8 * 8 * 9 + 4 * 4 * 16 * 72 + 256 * 10 == 25600
    fit = chip.details["target"]
    assert (fit["target"], fit["fits"], fit["ram_margin"]) == ("tiny", False, 1024 - arena)
    assert 0 < fit["flash_margin"] < 1024 * 1024  # the model's bytes, counted against flash
    assert fit["not_counted"] == targets.NOT_COUNTED and fit["source"] == "test"
