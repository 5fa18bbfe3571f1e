"""TFLite Micro code size, interpreter RAM and latency estimates (keras_distill.footprint)."""

import numpy as np
import pytest

from keras_distill import footprint, targets
from keras_distill.export import micro


def _conv(h, w, cin, cout, k=3):
    return {"op": "CONV_2D", "inputs": [{"shape": [1, h, w, cin]}, {"shape": [cout, k, k, cin]}],
            "outputs": [{"shape": [1, h, w, cout]}]}


def _dw(h, w, c, k=3):
    return {"op": "DEPTHWISE_CONV_2D",
            "inputs": [{"shape": [1, h, w, c]}, {"shape": [1, k, k, c]}],
            "outputs": [{"shape": [1, h, w, c]}]}


def _fc(n_in, n_out):
    return {"op": "FULLY_CONNECTED", "inputs": [{"shape": [1, n_in]}, {"shape": [n_out, n_in]}],
            "outputs": [{"shape": [1, n_out]}]}


def test_every_number_has_a_source():
    assert footprint.RUNTIME_CODE_SOURCE and footprint.OP_CODE_SOURCE
    assert footprint.STATIC_RAM_SOURCE and "tflite-micro commit" in footprint.MEASUREMENT
    for name in targets.TARGETS:  # every named target has a core, a clock entry and a source
        core, mhz, source = footprint.CLOCKS[name]
        assert core in footprint.CYCLES_PER_MAC and source
        assert (mhz is None) == (name == "android-cpu")
    for core, (rates, source) in footprint.CYCLES_PER_MAC.items():
        assert source
        assert (rates is None) == (core == "cortex-a")
        if rates is not None:
            assert set(rates) == set(footprint.FAMILIES)
            assert all(0.5 < r < 500 for r in rates.values()), (core, rates)


def test_code_size_is_runtime_plus_the_table():
    ops = ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "RESHAPE"]
    r = footprint.code_size(ops + ["CONV_2D"], "nrf52840")  # CONV_2D counted once
    assert r["runtime"] == footprint.RUNTIME_CODE_BYTES == 11652
    assert r["per_op"] == {op: footprint.OP_CODE_BYTES[op] for op in ops}
    assert r["bytes"] == 11652 + 31540 + 21444 + 20208 + 11228 + 1440
    assert r["unknown_ops"] == [] and r["upper_bound"] and not r["estimated"]
    assert "tflite-micro" in r["source"]
    # list_ops-style input is accepted too
    listed = [{"op": op, "inputs": [], "outputs": []} for op in ops]
    assert footprint.code_size(listed, "nrf52840")["bytes"] == r["bytes"]


def test_unknown_ops_get_the_stated_default_and_are_listed():
    r = footprint.code_size(["FULLY_CONNECTED", "MY_OP", "OTHER_OP", "MY_OP"])
    assert r["unknown_ops"] == ["MY_OP", "OTHER_OP"]
    default = footprint.DEFAULT_OP_CODE_BYTES
    assert default == int(np.median(list(footprint.OP_CODE_BYTES.values())))
    assert r["per_op"]["MY_OP"] == r["per_op"]["OTHER_OP"] == default
    assert r["bytes"] == footprint.RUNTIME_CODE_BYTES + 20208 + 2 * default
    assert "MY_OP" in r["source"] and "median" in r["source"]


def test_code_size_estimates_and_non_tflm_targets_say_so():
    assert footprint.code_size(["CONV_2D"], "rp2040")["estimated"]
    assert footprint.code_size(["CONV_2D"], "esp32-s3")["estimated"]
    assert not footprint.code_size(["CONV_2D"], "cortex-m7-512k")["estimated"]
    phone = footprint.code_size(["CONV_2D"], "android-cpu")
    assert phone["bytes"] is None and "LiteRT" in phone["source"]
    with pytest.raises(ValueError, match="Unknown target"):
        footprint.code_size(["CONV_2D"], "nrf5")


def test_measured_combinations_are_below_the_sum_of_their_parts():
    for ops, measured in footprint.COMBINED_CODE_BYTES.items():
        upper = footprint.code_size(sorted(ops))["bytes"] - footprint.RUNTIME_CODE_BYTES
        assert 0.6 * upper < measured < upper, (sorted(ops), measured, upper)


def test_static_ram_parts_and_resolver_growth():
    one = footprint.static_ram("nrf52840")
    assert one["bytes"] == 208 + 48 + 296 + 176 + 1264
    assert one["bytes"] == sum(one[k] for k in ("interpreter", "op_resolver", "globals", "stack"))
    four = footprint.static_ram("nrf52840", ops=["CONV_2D", "MAX_POOL_2D", "RESHAPE",
                                                  "FULLY_CONNECTED"])
    assert four["op_resolver"] - one["op_resolver"] == 3 * 36  # measured 48 -> 156 bytes
    assert four["stack"] == one["stack"]  # the deepest of them is CONV_2D
    small = footprint.static_ram(None, ops=["FULLY_CONNECTED", "SOFTMAX"])
    assert small["stack"] == 176 + 720
    assert footprint.static_ram(None, ops=["MY_OP"])["stack"] == 176 + 1408
    assert footprint.static_ram("android-cpu")["bytes"] is None
    assert footprint.static_ram("rp2040")["estimated"]


def test_op_macs_by_hand():
    ops = [_conv(8, 8, 1, 8), _dw(4, 4, 8), _fc(256, 10),
           {"op": "SOFTMAX", "inputs": [{"shape": [1, 10]}], "outputs": [{"shape": [1, 10]}]}]
    assert footprint.op_macs(ops) == [8 * 8 * 8 * 9, 4 * 4 * 8 * 9, 2560, 0]
    assert sum(footprint.op_macs(ops)) == micro.macs(ops)


def test_latency_is_linear_in_macs_and_inverse_in_clock():
    one = footprint.latency([_fc(100, 10)], "nrf52840")
    two = footprint.latency([_fc(100, 10), _fc(100, 10)], "nrf52840")
    assert one["macs"] == 1000 and two["macs"] == 2000
    assert two["cycles"] == pytest.approx(2 * one["cycles"])
    assert two["ms"] == pytest.approx(2 * one["ms"])
    rate = footprint.CYCLES_PER_MAC["cortex-m4"][0]["fully_connected"]
    assert one["cycles"] == pytest.approx(1000 * rate)
    assert one["ms"] == pytest.approx(1000 * rate / 64e3)  # 64 MHz
    fast = footprint.latency([_fc(100, 10)], "nrf52840", mhz=128.0)
    assert fast["ms"] == pytest.approx(one["ms"] / 2) and fast["cycles"] == one["cycles"]
    # same core, other clock: cortex-m4-256k is also an nRF52840 at 64 MHz
    assert footprint.latency([_fc(100, 10)], "cortex-m4-256k")["ms"] == pytest.approx(one["ms"])


def test_latency_per_family_and_cores():
    ops = [_conv(8, 8, 4, 8), _dw(8, 8, 8), _fc(512, 10)]
    r = footprint.latency(ops, "esp32-s3")
    fam = r["per_family"]
    assert fam["conv"]["macs"] == 8 * 8 * 8 * 36 and fam["depthwise_conv"]["macs"] == 8 * 8 * 8 * 9
    assert fam["fully_connected"]["macs"] == 5120 == r["macs"] - 18432 - 4608
    assert r["cycles"] == pytest.approx(sum(f["macs"] * f["cycles_per_mac"] for f in fam.values()))
    assert r["ms"] == pytest.approx(r["cycles"] / 240e3)
    assert "ESP-NN" in r["source"] and r["assumptions"]
    # the same model takes more cycles on a Cortex-M0+ than on a Cortex-M4, fewer on an M7
    m4, m7, m0 = (footprint.latency(ops, t)["cycles"]
                  for t in ("nrf52840", "cortex-m7-512k", "rp2040"))
    assert m7 < m4 < m0
    phone = footprint.latency(ops, "android-cpu")
    assert phone["ms"] is None and phone["cycles"] is None
    assert "no estimate" in phone["assumptions"][0]
    custom = targets.Target("m4-100", "a test M4", 1, 1, "test")
    with pytest.raises(ValueError, match="core= and mhz="):
        footprint.latency(ops, custom)
    assert footprint.latency(ops, custom, core="cortex-m4", mhz=128.0)["ms"] == pytest.approx(
        m4 / 128e3)


def test_cortex_m4_rates_reproduce_the_mlperf_results_they_come_from():
    """The derived rates give back each MLPerf Tiny v0.5 model's latency on the L4R5ZI."""
    rates = footprint.CYCLES_PER_MAC["cortex-m4"][0]
    for bench in footprint.TFLM_M4:
        macs = footprint.MLPERF_TINY_MACS[bench.model]
        cycles = sum(macs[f] * rates[f] for f in footprint.FAMILIES)
        measured = 120e6 / bench.throughput
        if bench.model in ("ad", "ic"):  # solved exactly from these two
            assert cycles == pytest.approx(measured, rel=1e-9)
        else:  # depthwise is fitted to KWS and VWW together
            assert cycles == pytest.approx(measured, rel=0.35)


def test_op_macs_sum_equals_micro_macs_on_a_converted_model(tmp_path):
    import keras

    from keras_distill.export import tflite

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5)(x)
    model = keras.Model(inputs, outputs)
    data = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    saved = tflite.saved_model(model, tmp_path / "sm", batch_size=1)
    listed = tflite.list_ops(tflite.convert(saved, "int8", representative_data=data))
    per_op = footprint.op_macs(listed)
    assert sum(per_op) == micro.macs(listed) == 8 * 8 * 4 * 9 + 8 * 8 * 4 * 9 + 256 * 5
    r = footprint.latency(listed, "nrf52840")
    assert r["macs"] == sum(per_op) and r["ms"] > 0
    sized = footprint.code_size(listed, "nrf52840")
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(sized["per_op"])
