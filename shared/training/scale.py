"""Distribution strategies, dtype policies and XLA switches for the training entry points.

Every training entry point takes `--strategy`, `--precision` and `--xla`
(see `shared.cli_common.add_run_args`) and passes them to `configure`, then builds
and compiles its model inside `strategy.scope()`.

Custom `train_step`s stay correct under these settings when they:

- compute losses in float32 (`as_float32`) even under a mixed policy: attribution
  maps and contrastive logits lose too much precision in float16;
- let `model.optimizer` handle float16 loss scaling (Keras wraps the optimizer in a
  `LossScaleOptimizer` under `mixed_float16`, and `self.optimizer.apply` unscales),
  passing the gradients through `skip_together` first so that every replica skips an
  overflowing step;
- gather the embeddings of every replica before a contrastive loss
  (`gather_across_replicas`), so each anchor sees the negatives of the global batch;
- divide per-example losses by the global batch size, which Keras's `compile` losses
  already do under a strategy.
"""

import contextlib
import dataclasses
import os

import keras
import tensorflow as tf

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
AUTO = "auto"
STRATEGIES = ("default", "mirrored", "multi-worker")
# CPU flags (Linux /proc/cpuinfo) of the units oneDNN runs bfloat16 products on.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_flags(cpuinfo: str) -> set:
    """The `BF16_CPU_FLAGS` listed on the "flags" lines of /proc/cpuinfo text."""
    found = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            found.update(set(value.split()) & set(BF16_CPU_FLAGS))
    return found


def resolve_precision(precision: str = AUTO, *, cpuinfo=None, gpu_visible=None) -> str:
    """The dtype policy that `precision` names; "auto" picks one for this machine.

    "auto" is `mixed_bfloat16` on a CPU with bfloat16 units (AVX-512 BF16 or AMX flags
    in /proc/cpuinfo) when no GPU is visible, else `float32`: on such CPUs oneDNN runs
    bfloat16 convolutions and matrix products faster than float32 (docs/scaling.md has
    the measured step-time ratios), elsewhere bfloat16 is emulated and slower. On a GPU
    it stays `float32`; ask for a mixed policy there explicitly.

    Args:
        precision: str, default "auto". "auto" or one of `PRECISIONS` (returned as is).
        cpuinfo: str, optional. /proc/cpuinfo text; read from the file when None (an
            unreadable file counts as no bfloat16 units).
        gpu_visible: bool, optional. Whether TensorFlow sees a GPU; asked when None.

    Returns:
        str, one of `PRECISIONS`.
    """
    if precision in PRECISIONS:
        return precision
    if precision != AUTO:
        raise ValueError(f"precision must be {AUTO!r} or one of {PRECISIONS}. "
                         f"Received: precision={precision!r}")
    if gpu_visible is None:
        gpu_visible = bool(tf.config.list_physical_devices("GPU"))
    if gpu_visible:
        return "float32"
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    return "mixed_bfloat16" if cpu_bf16_flags(cpuinfo) else "float32"


def set_precision(policy: str = "float32") -> str:
    """Sets the global Keras dtype policy ("auto" or one of `PRECISIONS`).

    Returns:
        str, the policy set (`resolve_precision` of `policy`).
    """
    policy = resolve_precision(policy)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def make_strategy(name: str = "default", devices=None) -> tf.distribute.Strategy:
    """Returns a tf.distribute strategy by name.

    Args:
        name: str. "default" (one device), "mirrored" (all local GPUs, or `devices`)
            or "multi-worker" (reads the standard TF_CONFIG variable).
        devices: list of str, optional. Devices for the mirrored strategy, e.g.
            `["/cpu:0", "/cpu:1"]` after `split_cpu(2)`.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if devices is None and not tf.config.list_logical_devices("GPU"):
            cpus = tf.config.list_logical_devices("CPU")
            devices = [d.name for d in cpus]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multi-worker' reads the cluster from the TF_CONFIG "
                             "environment variable, which is not set")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}. Received: strategy={name!r}")


def split_cpu(n: int) -> None:
    """Splits the CPU into `n` logical devices (before TensorFlow first uses it).

    Lets a mirrored strategy be tested on one CPU: each logical device is a replica.
    """
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


@dataclasses.dataclass(frozen=True)
class ScaleSettings:
    """What `configure` resolved: the strategy to build under and compile options."""

    strategy: tf.distribute.Strategy
    precision: str
    jit_compile: bool

    @property
    def num_replicas(self) -> int:
        return self.strategy.num_replicas_in_sync


def configure(strategy: str = "default", precision: str = "float32", xla: bool = False,
              devices=None) -> ScaleSettings:
    """Sets the dtype policy and returns the strategy and `jit_compile` flag to use.

    `precision` "auto" is resolved (`resolve_precision`); the settings hold the policy set.

    Example:
        settings = configure("mirrored", "mixed_float16", xla=True)
        with settings.strategy.scope():
            model = build_model()
            model.compile(optimizer="adam", jit_compile=settings.jit_compile)
    """
    precision = set_precision(precision)
    return ScaleSettings(make_strategy(strategy, devices), precision, bool(xla))


def clear_session(free_memory: bool = True) -> None:
    """`keras.backend.clear_session`, keeping the global dtype policy.

    Keras keeps the dtype policy in the state that `clear_session` resets, so a run
    started with `--precision mixed_float16` would silently train every model after
    the first clear in float32. Call this between models instead.
    """
    policy = keras.mixed_precision.global_policy()
    keras.backend.clear_session(free_memory=free_memory)
    keras.mixed_precision.set_global_policy(policy)


def strategy_scope(strategy):
    """`strategy.scope()`, or a no-op context for None (the default strategy).

    Enter it around each model's build, fit and evaluation, not around a whole run:
    `keras.backend.clear_session()` between models would drop an enclosing scope.
    """
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def as_float32(x):
    """Casts a tensor to float32 (losses, attribution maps and logits are kept in it)."""
    return tf.cast(x, tf.float32)


def gather_across_replicas(x, axis: int = 0):
    """Concatenates `x` from every replica along `axis` inside a replica context.

    Outside a strategy (or with one replica) it returns `x` unchanged. Gradients flow
    back to each replica's own slice, as needed for contrastive losses whose negatives
    come from the whole global batch.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return x
    return ctx.all_gather(x, axis=axis)


def local_slice(global_values, local_batch_size, axis: int = 0):
    """The rows of gathered `global_values` that belong to this replica."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return global_values
    replica = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
    start = replica * local_batch_size
    return tf.gather(global_values, tf.range(start, start + local_batch_size), axis=axis)


def scale_for_replicas(loss):
    """Divides a loss by the number of replicas in sync.

    Keras `Loss` objects do this themselves; a custom `train_step` that adds its own
    term (an attribution penalty, say) calls this on that term, because the
    optimizer sums the replicas' gradients.
    """
    strategy = tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return loss
    return loss * tf.cast(1.0 / replicas, loss.dtype)


def skip_together(optimizer, grads):
    """Makes every replica's gradients non-finite when one replica's are.

    Under mixed_float16, Keras's `LossScaleOptimizer` (Keras 3.15, TensorFlow, mirrored
    strategy) decides whether to skip a step from the first replica's gradients alone,
    before they are summed; a float16 overflow on another replica then reaches the
    weights as an infinity or NaN. With the decision shared, all replicas skip the step and the loss
    scale is lowered, as on one device. Gradients are returned unchanged outside a
    strategy, with one replica, or when `optimizer` does not scale the loss.
    """
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return grads
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return grads
    present = [g for g in grads if g is not None]
    finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in present]))
    overflows = ctx.all_reduce("SUM", 1.0 - tf.cast(finite, tf.float32))
    all_finite = overflows < 0.5
    return [g if g is None else tf.where(all_finite, g, tf.constant(float("nan"), g.dtype))
            for g in grads]
