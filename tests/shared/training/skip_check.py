"""Run in a fresh process: one loss-scaled SGD step on two replicas where only the
second replica's gradient overflows, with and without `shared.scale.skip_together`.
Prints the variable and loss scale after the step as JSON."""

import json
import sys


def step(share: bool):
    import keras
    import tensorflow as tf

    from shared.training.scale import make_strategy, skip_together

    strategy = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    with strategy.scope():
        var = tf.Variable(1.0)
        opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1),
                                                  initial_scale=1024.0)
        opt.build([var])

    @tf.function
    def run():
        def replica_step():
            ctx = tf.distribute.get_replica_context()
            overflow = tf.equal(ctx.replica_id_in_sync_group, 1)
            grad = tf.where(overflow, tf.constant(float("inf")), tf.constant(1024.0))
            grads = [grad]
            if share:
                grads = skip_together(opt, grads)
            opt.apply(grads, [var])
        strategy.run(replica_step)

    run()
    return {"var": float(var.numpy()), "scale": float(opt.dynamic_scale.numpy())}


if __name__ == "__main__":
    from shared.training.scale import split_cpu

    split_cpu(2)
    print(json.dumps({"shared": step(True), "first_replica_only": step(False)}))
    sys.stdout.flush()
