"""keras_distill.registry: the names it gives are what the library has (presets and their
keyword arguments, loss classes and their arguments, export formats and quantization modes,
data sets). That it imports no TensorFlow: tests/test_config.py."""

import importlib
import inspect

from keras_distill import registry


def _arguments(fn, *, skip=("self", "name", "kwargs")):
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in skip]


def test_presets_are_the_registry_s_with_its_keyword_arguments():
    from keras_distill import presets

    assert list(presets.PRESETS) == list(registry.PRESET_ARGS)
    for name, fn in presets.PRESETS.items():
        keyword_only = [p.name for p in inspect.signature(fn).parameters.values()
                        if p.kind is p.KEYWORD_ONLY and p.name != "name"]
        assert tuple(keyword_only) == registry.PRESET_ARGS[name], name


def test_losses_are_the_registry_s_with_its_arguments():
    from keras_distill import losses

    assert list(losses.ALIASES) == list(registry.LOSS_ARGS)
    for name, cls in losses.ALIASES.items():
        assert set(_arguments(cls.__init__)) == set(registry.LOSS_ARGS[name]), name
        required = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                    if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD
                    and p.name != "self"]
        assert tuple(required) == registry.REQUIRED_LOSS_ARGS.get(name, ()), name


def test_export_formats_modes_and_defaults_are_the_registry_s():
    export = importlib.import_module("keras_distill.export")

    assert registry.FORMATS == tuple(export.FORMATS)
    assert registry.QUANTIZATION_MODES == tuple(export.QUANTIZATION_MODES)
    assert registry.CALIBRATED_MODES == tuple(export.CALIBRATED_MODES)
    defaults = inspect.signature(export.export).parameters
    assert tuple(defaults["formats"].default) == registry.FORMATS
    # one set of export defaults: the library's export() and the CLI's `quantization`
    assert tuple(defaults["quantization"].default) == registry.DEFAULT_QUANTIZATION
    assert set(registry.DEFAULT_QUANTIZATION) <= set(registry.QUANTIZATION_MODES)
    assert set(registry.CALIBRATED_MODES) <= set(registry.QUANTIZATION_MODES)


def test_data_sets_are_the_library_s():
    from keras_distill import data

    assert set(registry.KERAS_DATASETS) == set(data.KERAS_DATASETS)
    for name in registry.BUNDLED_DATASETS:
        assert callable(getattr(data, f"load_{name}"))  # the bundled loader
