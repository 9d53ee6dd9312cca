"""Where training computes: one device (the default), every GPU of a host, or several hosts, on
TensorFlow's own engine (``tf.distribute``: ``MirroredStrategy``, ``MultiWorkerMirroredStrategy``).

A global batch is cut into one contiguous part per replica (worker processes each feed their own
replicas' parts: every worker draws the same batch order from the seed); each replica's loss is its
part's mean times its share of the batch, so the sum over replicas is the batch's mean, and the
gradients are summed across replicas before clipping, so one step is the step one device takes on
the whole batch: the global batch size and the learning-rate schedule mean the same whatever the
number of replicas.
"""
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from rasa_kd.errors import ConfigError

logger = logging.getLogger(__name__)

STRATEGIES = ("one_device", "mirrored", "multi_worker")
_made: dict = {}  # TensorFlow allows one multi-worker strategy per process: made once, then reused


def make_strategy(name: str, devices: Optional[Sequence[str]] = None, cpu_replicas: int = 0):
    """The ``tf.distribute`` strategy called ``name``; None for ``one_device`` (today's path, unchanged).

    ``mirrored`` uses ``devices`` (default: every GPU, else the CPU); ``cpu_replicas`` > 1 first splits
    the CPU into that many logical devices and mirrors over them (to run the distributed path without
    GPUs). ``multi_worker`` reads the cluster from ``TF_CONFIG``, as TensorFlow documents it.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"'compute.strategy' must be one of {', '.join(STRATEGIES)}; got {name!r}")
    if name == "one_device":
        return None
    key = (name, tuple(devices or ()), cpu_replicas)
    if key in _made:
        return _made[key]
    import tensorflow as tf

    if cpu_replicas > 1:
        _split_cpu(cpu_replicas)
        devices = devices or [f"/cpu:{i}" for i in range(cpu_replicas)]
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    else:
        _check_tf_config()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    logger.info("training on %s with %d replicas", name, strategy.num_replicas_in_sync)
    _made[key] = strategy
    return strategy


def _split_cpu(count: int) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError:
        raise ConfigError(f"'compute.cpu_replicas' is {count}, but TensorFlow already started with "
                          f"{len(tf.config.list_logical_devices('CPU'))} CPU device(s); set it before any model is loaded "
                          "(rasa-kd does, when the run starts)") from None


def _check_tf_config() -> None:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError("'compute.strategy' is multi_worker but TF_CONFIG is not set: each worker needs "
                          '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": I}} '
                          "(scripts/launch_workers.py sets it for local workers)")
    try:
        config = json.loads(raw)
        workers, task = config["cluster"]["worker"], config["task"]
        if task["type"] != "worker" or not 0 <= int(task["index"]) < len(workers):
            raise ValueError(f"task {task} is not one of the {len(workers)} workers")
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"TF_CONFIG is not a worker cluster as TensorFlow expects: {error}") from None


def scope(strategy):
    """``strategy.scope()``, where a model and its optimizer must be built to train on it; a no-op for None."""
    import contextlib

    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def is_chief(strategy) -> bool:
    """Whether this process writes the run's files: always, but for the workers other than 0 of a cluster."""
    if strategy is None or not hasattr(strategy, "cluster_resolver") or strategy.cluster_resolver is None:
        return True
    resolver = strategy.cluster_resolver
    return resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0)


def replica_parts(batch: np.ndarray, replicas: int) -> List[np.ndarray]:
    """``batch`` cut into ``replicas`` contiguous parts, as even as can be (a part may be empty)."""
    return np.array_split(np.asarray(batch), replicas)


def distributed_step(strategy, step: Callable) -> Callable:
    """``step`` run on every replica of ``strategy`` inside one traced function; called with the replicas'
    inputs, it returns the sum of their losses.

    ``step`` may be a ``tf.function``: its Python function is used (TensorFlow cannot synchronise replicas
    inside a nested traced step).
    """
    import tensorflow as tf

    inner = getattr(step, "python_function", step)

    @tf.function(reduce_retracing=True)  # batch shapes vary: traced for unknown sizes after the first few
    def distributed(inputs):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(inner, args=inputs), axis=None)

    return distributed


def run_distributed(strategy, distributed: Callable, parts: List[tuple], scales: List[float]) -> float:
    """Run ``distributed`` (from :func:`distributed_step`) with ``parts[r]`` and ``scales[r]`` on replica r."""
    import tensorflow as tf

    def values(context):
        index = context.replica_id_in_sync_group
        return tuple(tf.constant(a) for a in parts[index]) + (tf.constant(scales[index], tf.float32),)

    return float(distributed(strategy.experimental_distribute_values_from_function(values)))


def summed_gradients(gradients: List[Any]) -> List[Any]:
    """Inside a replica: the gradients summed over every replica (as they are on one device)."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return gradients
    dense = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]
    return context.all_reduce(tf.distribute.ReduceOp.SUM, dense)


def apply_gradients(optimizer, gradients: List[Any], variables: List[Any]) -> None:
    """``optimizer.apply_gradients``; across replicas, with gradients already summed (:func:`summed_gradients`)."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        optimizer.apply_gradients(zip(gradients, variables))
    elif isinstance(optimizer, tf.keras.optimizers.legacy.Optimizer):  # e.g. transformers' AdamWeightDecay
        optimizer.apply_gradients(zip(gradients, variables), experimental_aggregate_gradients=False)
    else:
        optimizer.apply_gradients(zip(gradients, variables), skip_gradients_aggregation=True)


@dataclass(frozen=True)
class Acceleration:
    """GPU settings of the teacher's and a tiny-BERT student's training (``compute.mixed_precision``,
    ``compute.xla``); both off by default, which is the CPU path unchanged."""

    mixed_precision: bool = False  # float16 compute, float32 weights, dynamic loss scaling
    xla: bool = False  # the one-device training step compiled with XLA (jit_compile)

    @contextlib.contextmanager
    def building(self):
        """Models built inside take the mixed-precision policy when it is on; the global policy is restored after."""
        import tensorflow as tf

        if not self.mixed_precision:
            yield
            return
        before = tf.keras.mixed_precision.global_policy()
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            yield
        finally:
            tf.keras.mixed_precision.set_global_policy(before)

    def optimizer(self, optimizer):
        """``optimizer``, wrapped in Keras' dynamic loss scaling under mixed precision."""
        import tensorflow as tf

        return tf.keras.mixed_precision.LossScaleOptimizer(optimizer) if self.mixed_precision else optimizer

    def jit_compile(self, strategy) -> Optional[bool]:
        if self.xla and strategy is not None:
            logger.warning("'compute.xla' compiles the one-device step only; the %s step runs uncompiled",
                           type(strategy).__name__)
        return True if self.xla and strategy is None else None


def scaled_loss(optimizer, loss):
    """The loss to differentiate: scaled up under dynamic loss scaling (see :func:`unscaled_gradients`)."""
    return optimizer.get_scaled_loss(loss) if hasattr(optimizer, "get_scaled_loss") else loss


def unscaled_gradients(optimizer, gradients: List[Any]) -> List[Any]:
    return optimizer.get_unscaled_gradients(gradients) if hasattr(optimizer, "get_unscaled_gradients") else gradients


def local_devices(strategy) -> List[str]:
    """The devices this process computes on under ``strategy``: every GPU (or logical CPU) of a mirrored
    strategy, this worker's under multi_worker; empty for one device."""
    return list(strategy.extended.worker_devices) if strategy is not None else []
