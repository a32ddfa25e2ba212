"""Early stopping decides the same whether a run was resumed or not, and can be turned off."""
import types

import pytest

from features.errors import RecsysError
from recsys.backup import EpochLog, past_epochs
from recsys.early_stopping import BestEpochEarlyStopping

LOSSES = [0.70, 0.52, 0.55, 0.51, 0.56, 0.58, 0.60]


def _run(values, patience, past=0, monitor="val_total_loss", mode="min"):
    """Observes `values` epoch by epoch after replaying the first `past` as a resumed run does: (callback, epochs run)."""
    logs = [{monitor: v} for v in values]
    callback = BestEpochEarlyStopping(monitor, mode, patience, logs[:past])
    model = types.SimpleNamespace(stop_training=callback.stopped)
    callback.set_model(model)
    epoch = past
    while epoch < len(values) and not model.stop_training:
        callback.on_epoch_end(epoch, logs[epoch])
        epoch += 1
    return callback, epoch


@pytest.mark.parametrize("patience", [None, 0, 1, 2, 3])
def test_a_resumed_run_stops_and_publishes_where_an_uninterrupted_run_does(patience):
    uninterrupted, epochs = _run(LOSSES, patience)
    for past in range(1, epochs + 1):
        resumed, resumed_epochs = _run(LOSSES, patience, past=past)
        assert (resumed_epochs, resumed.stopped_epoch) == (epochs, uninterrupted.stopped_epoch), past
        assert resumed.published_epoch() == uninterrupted.published_epoch(), past


def test_patience_counts_epochs_without_improvement_and_the_best_epoch_is_published():
    assert [_run(LOSSES, p)[1] for p in (0, 1, 2, 3)] == [3, 3, 6, 7]  # 0 and 1 both stop at the first
    callback, _ = _run(LOSSES, 2)
    epoch, reason = callback.published_epoch()
    assert epoch == 3 and reason.startswith("the best val_total_loss (0.51) of epochs 1-6; stopped after epoch 6")


def test_null_patience_never_stops_and_publishes_the_last_epoch():
    callback, epochs = _run(LOSSES, None)
    assert epochs == len(LOSSES) and not callback.stopped
    assert callback.published_epoch() == (len(LOSSES) - 1, "early stopping is off (early_stopping_patience: null): "
                                                            "the last epoch")


def test_an_auc_is_maximised():
    callback, epochs = _run([0.60, 0.70, 0.65, 0.64], 2, monitor="val_ctr_auc", mode="max")
    assert epochs == 4 and callback.published_epoch()[0] == 1


def test_a_monitor_that_is_not_logged_is_refused_naming_the_setting():
    callback = BestEpochEarlyStopping("val_ctr_auc", "max", 2, [])
    with pytest.raises(RecsysError, match=r"training.monitor: 'val_ctr_auc' is not among the logged values "
                                          r"\['val_total_loss'\]"):
        callback.on_epoch_end(0, {"val_total_loss": 0.5})


def test_the_epoch_log_gives_a_resume_exactly_the_epochs_its_checkpoint_has(tmp_path):
    log = EpochLog(tmp_path, past=[], chief=True)
    for epoch, loss in enumerate(LOSSES[:3]):
        log.on_epoch_end(epoch, {"val_total_loss": loss})
    # A kill after epoch 3's log line but before its checkpoint: the checkpoint says resume at epoch 3.
    assert past_epochs(tmp_path, 2) == [{"val_total_loss": 0.70}, {"val_total_loss": 0.52}]
    assert past_epochs(tmp_path, 0) == []
    with pytest.raises(RecsysError, match=r"epochs.json: the backup's checkpoint is at epoch 4 but this file logs 3"):
        past_epochs(tmp_path, 4)
