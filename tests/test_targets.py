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
    from keras_distill import footprint

    ops = chip.details["ops"]
    static = footprint.static_ram(None, ops)["bytes"]
    code = footprint.code_size(ops)["bytes"]
    # RAM: the measured arena and the interpreter's own RAM; flash: the model and TFLM's code
    assert (fit["target"], fit["fits"]) == ("tiny", False)
    assert fit["ram_margin"] == 1024 - arena - static and fit["ram_needed"] == arena + static
    assert fit["flash_needed"] == chip.size_bytes + code
    assert fit["flash_margin"] == 1024 * 1024 - chip.size_bytes - code > 0
    assert fit["counted"]["tflm_code_bytes"] == code > 40_000  # CONV_2D alone is 31.5 kB
    assert fit["counted"]["estimated"]  # a target of one's own: the Cortex-M4 numbers
    assert fit["not_counted"] == targets.COUNTED_NOT and fit["source"] == "test"
    # a device of no known core: no latency estimate, rather than a wrong one
    assert chip.details["latency_estimate"] is None


@pytest.mark.slow
def test_a_named_target_gets_a_latency_estimate_from_the_macs(tmp_path):
    from keras_distill import footprint
    from keras_distill.export import export
    from keras_distill.presets import student_cnn

    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")
    report = export(student_cnn(), tmp_path, formats=("micro",), quantization=("int8",),
                    representative_data=x, target="nrf52840")
    chip = report.get("micro", "int8")
    estimate = chip.details["latency_estimate"]
    rates = footprint.CYCLES_PER_MAC["cortex-m4"][0]
    # conv1 + conv2 at the conv rate, logits at the fully-connected rate, at 64 MHz
    cycles = (8 * 8 * 8 * 9 + 4 * 4 * 16 * 72) * rates["conv"] + 2560 * rates["fully_connected"]
    assert estimate["macs"] == chip.details["macs"] == 25600
    assert estimate["ms"] == pytest.approx(cycles / 64e3, rel=1e-6)
    fit = chip.details["target"]
    assert fit["fits"] and not fit["counted"]["estimated"]
    assert "TFLite Micro's code" in targets.describe(fit)
