"""Named device targets: their RAM and flash, and whether an int8 micro artifact fits.

Each :class:`Target` holds the memory a TensorFlow Lite Micro model can use on a device and
where the numbers come from. :func:`fit` compares an artifact with a target: the tensor arena
measured in TFLite Micro against RAM, the model's bytes against flash, with the margins. What
is not counted, and said so in every result: TFLite Micro's own code (flash) and the
interpreter's static RAM when the model's ops are not given; with them, both are counted
from :mod:`keras_distill.footprint` (measured on a Cortex-M4 build of TFLite Micro).

Example:
    >>> fit({"arena_size": 3072, "model_bytes": 7688}, "nrf52840")["fits"]
    True
    >>> fit({"arena_size": 300 * 1024, "model_bytes": 7688}, "nrf52840")["fits"]
    False
"""

from __future__ import annotations

import dataclasses

KIB, MIB = 1024, 1024 * 1024
#: What :func:`fit` does not count without the model's ops.
NOT_COUNTED = ("TFLite Micro's code size in flash and the interpreter's static RAM are not "
               "counted: leave room for them (tens of KiB on Cortex-M builds)")
#: What :func:`fit` does not count with them.
COUNTED_NOT = ("your application's own code, data and stack, and interrupt handlers are not "
               "counted")


@dataclasses.dataclass(frozen=True)
class Target:
    """A device: ``ram`` and ``flash`` in bytes (``None``: no fixed limit) and their source."""

    name: str
    description: str
    ram: int | None
    flash: int | None
    source: str


TARGETS = {t.name: t for t in (
    Target("nrf52840", "Nordic nRF52840 (Cortex-M4F, 64 MHz)", 256 * KIB, 1 * MIB,
           "Nordic nRF52840 Product Specification v1.7, Key features: 1 MB flash, 256 KB RAM"),
    Target("cortex-m4-256k", "a Cortex-M4 board with 256 KiB RAM and 1 MiB flash, such as "
           "the Arduino Nano 33 BLE Sense (nRF52840)", 256 * KIB, 1 * MIB,
           "Arduino Nano 33 BLE Sense datasheet: nRF52840, 1 MB flash, 256 KB SRAM"),
    Target("cortex-m7-512k", "a Cortex-M7 with 512 KiB RAM and 2 MiB flash, such as the "
           "STM32F767ZI", 512 * KIB, 2 * MIB,
           "ST STM32F767ZI datasheet (DS11532): 2 Mbytes flash, 512 Kbytes SRAM"),
    Target("rp2040", "Raspberry Pi RP2040 (dual Cortex-M0+, 133 MHz) on a Pico",
           264 * KIB, 2 * MIB,
           "RP2040 datasheet: 264 kB on-chip SRAM; Raspberry Pi Pico datasheet: 2 MB QSPI "
           "flash"),
    Target("esp32-s3", "Espressif ESP32-S3-WROOM-1-N8R8 (Xtensa LX7, with PSRAM)",
           512 * KIB + 8 * MIB, 8 * MIB,
           "ESP32-S3 datasheet: 512 KB SRAM; ESP32-S3-WROOM-1 datasheet: N8R8 has 8 MB flash "
           "and 8 MB PSRAM (counted as RAM here: TFLM arenas can live in PSRAM)"),
    Target("android-cpu", "an Android phone's CPU (LiteRT)", None, None,
           "no fixed limit: a phone's memory is shared with the rest of the app"),
)}


def get(target):
    """The :class:`Target` of a name (or the target itself).

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if isinstance(target, Target):
        return target
    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}; known targets: {', '.join(TARGETS)} "
                         f"(or pass a keras_distill.targets.Target(name, description, ram, "
                         f"flash, source)).")
    return TARGETS[target]


def fit(artifact, target):
    """Whether a micro artifact fits ``target``.

    Args:
        artifact: ``{"arena_size": bytes, "model_bytes": bytes}`` (a micro artifact's
            measured arena and its model's size), optionally with ``"ops"`` (the model's op
            names, or ``tflite.list_ops`` output): then TFLite Micro's code for those ops is
            counted in flash and the interpreter's RAM outside the arena in RAM
            (:mod:`keras_distill.footprint`, measured on a Cortex-M4 build; a target of
            another core, or your own, uses those numbers and says so).
        target: a name of :data:`TARGETS` or a :class:`Target`.

    Returns:
        ``{"target", "fits", "ram_margin", "flash_margin", "ram_needed", "flash_needed",
        "counted", "not_counted", "source"}``: the margins in bytes (negative: over by that
        much; ``None``: no limit); ``counted`` the parts beyond arena and model (``None``
        without ``ops``).
    """
    t = get(target)
    arena, model = int(artifact["arena_size"]), int(artifact["model_bytes"])
    ram_needed, flash_needed, counted = arena, model, None
    ops = artifact.get("ops")
    from keras_distill import footprint

    on_tflm = t.name not in footprint.CLOCKS or footprint.CLOCKS[t.name][0] != "cortex-a"
    if ops is not None and on_tflm:

        profile = t.name if t.name in footprint.CLOCKS else None
        code = footprint.code_size(ops, profile)
        static = footprint.static_ram(profile, ops)
        counted = {"tflm_code_bytes": code["bytes"], "static_ram_bytes": static["bytes"],
                   "code_is_upper_bound": code["upper_bound"],
                   "unknown_ops": code["unknown_ops"],
                   "estimated": code["estimated"] or profile is None,
                   "source": (code["source"] + "; RAM: " + static["source"]
                              + ("" if profile else "; a target of your own: the Cortex-M4 "
                                 "build's numbers"))}
        ram_needed, flash_needed = arena + static["bytes"], model + code["bytes"]
    ram = None if t.ram is None else t.ram - ram_needed
    flash = None if t.flash is None else t.flash - flash_needed
    fits = all(m is None or m >= 0 for m in (ram, flash))
    return {"target": t.name, "fits": fits, "ram_margin": ram, "flash_margin": flash,
            "ram_needed": ram_needed, "flash_needed": flash_needed, "counted": counted,
            "not_counted": NOT_COUNTED if counted is None else COUNTED_NOT,
            "source": t.source}


def describe(fit_result):
    """One sentence of a :func:`fit` result: fits or not, with both margins and their source.

    Example:
        >>> describe(fit({"arena_size": 3072, "model_bytes": 7688}, "nrf52840"))[:48]
        'The micro artifact fits nrf52840: 259,072 bytes '
    """
    def margin(value, what):
        if value is None:
            return f"no {what} limit"
        return (f"{value:,} bytes of {what} to spare" if value >= 0 else
                f"{-value:,} bytes over its {what}")

    verdict = "fits" if fit_result["fits"] else "does NOT fit"
    counted = fit_result.get("counted")
    parts = "" if counted is None else (
        f"; counted: the arena and the interpreter's {counted['static_ram_bytes']:,} bytes of "
        f"RAM, the model and TFLite Micro's code for its ops, "
        f"{counted['tflm_code_bytes']:,} bytes"
        + (" (an upper bound: kernels share code)" if counted["code_is_upper_bound"] else "")
        + ("; code and RAM sizes from a Cortex-M4 build: an estimate for this device"
           if counted["estimated"] else ""))
    return (f"The micro artifact {verdict} {fit_result['target']}: "
            f"{margin(fit_result['ram_margin'], 'RAM')}, "
            f"{margin(fit_result['flash_margin'], 'flash')}{parts} "
            f"({fit_result['not_counted']}; source: {fit_result['source']}).")
