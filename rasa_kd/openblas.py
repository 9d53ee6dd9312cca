"""NumPy's OpenBLAS on CPUs it does not know.

The students answer one message with NumPy, whose matrix-vector products run in the OpenBLAS that NumPy
bundles: 0.3.20 with numpy 1.23, the newest Rasa 3.6 allows. That OpenBLAS does not recognise newer Intel
server CPUs (a Sapphire Rapids Xeon here) and falls back to its generic "Prescott" kernels, without AVX:
a BiLSTM student answered one message about twice as slowly (benchmarks/NOTES.md, "NumPy's OpenBLAS took this
machine for a Pentium 4"). ``OPENBLAS_CORETYPE``, read once when OpenBLAS loads, names the kernels to use
instead. Nothing here imports NumPy.
"""
import functools
import logging
import os
import sys
from pathlib import Path
from typing import Iterable, Mapping, MutableMapping, Optional, Set

logger = logging.getLogger(__name__)

VARIABLE = "OPENBLAS_CORETYPE"
# OpenBLAS's names for kernels without AVX2, which it falls back to on a CPU it cannot name.
GENERIC_KERNELS = {"prescott", "core2", "nehalem", "katmai", "coppermine", "northwood", "banias", "atom"}
AVX512 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}  # what OpenBLAS's SkylakeX kernels use
AVX2 = {"avx2", "fma"}  # and its Haswell kernels


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> Set[str]:
    """The instruction-set flags of the first CPU in ``cpuinfo`` (Linux); empty where there is no such file."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def suited_kernels(flags: Iterable[str]) -> Optional[str]:
    """The OpenBLAS kernels a CPU with ``flags`` runs well: SkylakeX with AVX-512, Haswell with AVX2, else None."""
    flags = set(flags)
    if AVX512 <= flags:
        return "SkylakeX"
    if AVX2 <= flags:
        return "Haswell"
    return None


def choose_kernels(environ: MutableMapping[str, str] = os.environ, flags: Optional[Iterable[str]] = None) -> Optional[str]:
    """Set OPENBLAS_CORETYPE in ``environ`` to the kernels this CPU runs well, for this process and the ones it
    starts, when it is unset and NumPy is not loaded yet (OpenBLAS reads it once, at load); the value set, or None.

    Called first by rasa-kd's own commands and scripts. Whether this OpenBLAS knows the CPU cannot be asked
    before it loads, so it is set either way: on a CPU it knows, these are its own choice or kernels of the same
    instruction set."""
    if VARIABLE in environ or "numpy" in sys.modules:
        return None
    kernels = suited_kernels(cpu_flags() if flags is None else flags)
    if kernels:
        environ[VARIABLE] = kernels
        logger.debug("%s=%s for NumPy's OpenBLAS (from the CPU's flags)", VARIABLE, kernels)
    return kernels


def generic_kernels_message(kernels: Optional[str], flags: Iterable[str], environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """What to do when NumPy's OpenBLAS runs ``kernels`` (its own name for them) without AVX2 on a CPU with
    ``flags`` that has it; None when the kernels suit the CPU."""
    suited = suited_kernels(flags)
    if not kernels or kernels.lower() not in GENERIC_KERNELS or suited is None:
        return None
    given = f" (though {VARIABLE}={environ[VARIABLE]} is set)" if VARIABLE in environ else ""
    return (f"NumPy's OpenBLAS runs its generic {kernels} kernels on this CPU, which has "
            f"{'AVX-512' if suited == 'SkylakeX' else 'AVX2'}{given}: students answer about twice as slowly. "
            f"Start the server with {VARIABLE}={suited} in its environment (e.g. `{VARIABLE}={suited} rasa run ...`).")


@functools.lru_cache(maxsize=None)
def blas_controller():
    """threadpoolctl's handle on the BLAS libraries loaded in this process (NumPy's), or None without threadpoolctl.
    Ask it only once NumPy is loaded: it sees the libraries loaded when it is first made."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn, a Rasa dependency
        return None
    return ThreadpoolController().select(user_api="blas")


def kernels_in_use() -> Optional[str]:
    """The kernels of the OpenBLAS loaded in this process (OpenBLAS's name, e.g. "SkylakeX"), or None without one."""
    controller = blas_controller()
    libraries = controller.lib_controllers if controller is not None else []
    return next((lib.architecture for lib in libraries if lib.internal_api == "openblas"), None)


@functools.lru_cache(maxsize=1)
def warn_if_generic_kernels() -> Optional[str]:
    """Log a warning, once a process, when NumPy's OpenBLAS did not recognise this CPU; the message, or None."""
    message = generic_kernels_message(kernels_in_use(), cpu_flags())
    if message:
        logger.warning(message)
    return message
