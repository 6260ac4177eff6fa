"""`--precision auto`: bfloat16 on CPUs with bfloat16 units, float32 elsewhere."""

import argparse

import keras
import pytest

from shared.cli.options import add_scale_args
from shared.training import scale

# Abridged /proc/cpuinfo of a two-core machine; only the "flags" lines matter.
_CPU = """processor\t: {n}
model name\t: Some Xeon
flags\t\t: fpu sse2 avx2 avx512f avx512bw {extra}
bugs\t\t: spectre_v1

"""


def _cpuinfo(extra):
    return "".join(_CPU.format(n=n, extra=extra) for n in range(2))


@pytest.mark.parametrize("extra", ["avx512_bf16", "amx_bf16 amx_tile", "avx512_bf16 amx_bf16"])
def test_auto_is_bfloat16_on_a_cpu_with_bf16_units(extra):
    assert scale.resolve_precision("auto", cpuinfo=_cpuinfo(extra), gpu_visible=False) \
        == "mixed_bfloat16"


def test_auto_is_float32_without_bf16_units():
    # avx512bw and avx512_vnni are not bfloat16 units; nor is a flag name in another field.
    cpuinfo = _cpuinfo("avx512_vnni") + "power management: avx512_bf16\n"
    assert scale.cpu_bf16_flags(cpuinfo) == set()
    assert scale.resolve_precision("auto", cpuinfo=cpuinfo, gpu_visible=False) == "float32"
    assert scale.resolve_precision("auto", cpuinfo="", gpu_visible=False) == "float32"


def test_auto_is_float32_when_a_gpu_is_visible():
    assert scale.resolve_precision("auto", cpuinfo=_cpuinfo("amx_bf16"), gpu_visible=True) \
        == "float32"


def test_named_policies_pass_through_and_others_are_refused():
    for name in scale.PRECISIONS:
        assert scale.resolve_precision(name, cpuinfo="", gpu_visible=True) == name
    with pytest.raises(ValueError, match="precision='bf16'"):
        scale.resolve_precision("bf16", cpuinfo="", gpu_visible=False)


def test_configure_and_the_option_record_the_resolved_policy(monkeypatch):
    monkeypatch.setattr(scale, "resolve_precision",
                        lambda p, **kw: "mixed_bfloat16" if p == "auto" else p)
    try:
        settings = scale.configure("default", "auto")
        assert settings.precision == "mixed_bfloat16"
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        parser = argparse.ArgumentParser()
        add_scale_args(parser)
        assert parser.parse_args(["--precision", "auto"]).precision == "mixed_bfloat16"
        assert parser.parse_args([]).precision == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
