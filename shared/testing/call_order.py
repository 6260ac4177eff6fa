"""Records whether a run opens its results store before it trains anything.

    events = store_then_training(monkeypatch, experiment, "run_fold")
    with pytest.raises(TrainingStopped):
        run_experiment(...)
    assert events == ["store opened", "training"]
"""

from shared.tracking.sink import ResultsSink


class TrainingStopped(RuntimeError):
    """Raised in place of the first training call."""


def store_then_training(monkeypatch, module, trainer: str) -> list:
    """Spies on `ResultsSink.open` and replaces `module.<trainer>` by a stop; returns
    the list the two calls append to ("store opened", "training"), in order."""
    events = []
    real_open = ResultsSink.open

    def spy_open(url, run_dir):
        events.append("store opened")
        return real_open(url, run_dir)

    def stop(*args, **kwargs):
        events.append("training")
        raise TrainingStopped("stop here")

    monkeypatch.setattr(ResultsSink, "open", staticmethod(spy_open))
    monkeypatch.setattr(module, trainer, stop)
    return events
