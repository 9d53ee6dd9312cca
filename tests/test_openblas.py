"""NumPy's OpenBLAS gets kernels this CPU runs well, and a server whose OpenBLAS fell back to generic ones says so."""
import os
import platform
import subprocess
import sys

import pytest

from rasa_kd import openblas

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl
processor\t: 1
flags\t\t: fpu sse2
"""
X86 = platform.machine().lower() in {"x86_64", "amd64"}


def test_cpu_flags_are_the_first_cpus(tmp_path):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    assert openblas.cpu_flags(tmp_path / "cpuinfo") == {"fpu", "sse2", "avx", "avx2", "fma", "avx512f", "avx512dq",
                                                        "avx512cd", "avx512bw", "avx512vl"}
    assert openblas.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize("flags, kernels", [
    ({"sse2", "avx2", "fma", "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"}, "SkylakeX"),
    ({"sse2", "avx2", "fma", "avx512f"}, "Haswell"),  # AVX-512 without the parts OpenBLAS's SkylakeX kernels use
    ({"sse2", "avx", "avx2", "fma"}, "Haswell"),
    ({"sse2", "avx"}, None),  # nothing better than what OpenBLAS finds itself
])
def test_suited_kernels_follow_the_instruction_sets(flags, kernels):
    assert openblas.suited_kernels(flags) == kernels


def test_kernels_are_chosen_only_when_unset_and_before_numpy_loads():
    given = {openblas.VARIABLE: "Zen"}
    assert openblas.choose_kernels(given, flags={"avx2", "fma"}) is None and given == {openblas.VARIABLE: "Zen"}
    import numpy  # noqa: F401  (loaded: too late to choose)

    empty = {}
    assert openblas.choose_kernels(empty, flags={"avx2", "fma"}) is None and empty == {}


def test_the_message_names_the_setting_only_for_generic_kernels_on_a_cpu_that_has_better():
    avx512 = {"avx2", "fma", *openblas.AVX512}
    message = openblas.generic_kernels_message("Prescott", avx512, environ={})
    assert "generic Prescott kernels" in message and "OPENBLAS_CORETYPE=SkylakeX rasa run" in message
    assert "though" in openblas.generic_kernels_message("Prescott", {"avx2", "fma"}, environ={openblas.VARIABLE: "Prescott"})
    assert openblas.generic_kernels_message("Haswell", avx512, environ={}) is None  # AVX2 kernels: fine
    assert openblas.generic_kernels_message("SkylakeX", avx512, environ={}) is None
    assert openblas.generic_kernels_message("Prescott", {"sse2", "sse3"}, environ={}) is None  # an old CPU: right
    assert openblas.generic_kernels_message(None, avx512, environ={}) is None  # not OpenBLAS


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    """``code`` in a new Python, its environment without OPENBLAS_CORETYPE unless ``env`` gives it."""
    environ = {k: v for k, v in os.environ.items() if k != openblas.VARIABLE}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**environ, **env})
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.skipif(not X86, reason="OpenBLAS's Haswell kernels are x86-64 kernels")
def test_the_chosen_kernels_are_the_ones_numpys_openblas_loads():
    code = ("from rasa_kd.openblas import choose_kernels; chosen = choose_kernels(flags={'avx2', 'fma'}); "
            "import numpy, threadpoolctl; "
            "print(chosen, *[lib['architecture'] for lib in threadpoolctl.threadpool_info() if lib['internal_api'] == 'openblas'])")
    assert run_python(code).stdout.split() == ["Haswell", "Haswell"]


@pytest.mark.skipif(openblas.suited_kernels(openblas.cpu_flags()) is None, reason="this CPU has no AVX2")
def test_a_process_whose_openblas_runs_generic_kernels_warns_once():
    code = ("import logging, numpy; logging.basicConfig(level=logging.WARNING, format='%(message)s'); "
            "from rasa_kd.openblas import warn_if_generic_kernels as warn; warn(); warn()")
    run = run_python(code, **{openblas.VARIABLE: "Prescott"})  # the kernels OpenBLAS 0.3.20 fell back to here
    assert run.stderr.count("generic Prescott kernels") == 1, run.stderr
