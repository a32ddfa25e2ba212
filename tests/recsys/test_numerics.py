"""The non-finite loss guard names the step and the task, and lets finite training through."""
import pytest

from recsys.numerics import NonFiniteLossError, StopOnNonFiniteEpochLoss, StopOnNonFiniteLoss


def test_finite_logs_pass_and_the_first_non_finite_task_is_named_with_its_step():
    guard = StopOnNonFiniteLoss(["ctr", "cvr", "ctcvr"])
    guard.on_epoch_begin(2)
    guard.on_train_batch_end(6, {"loss": 0.7, "ctr_loss": 0.5, "cvr_loss": 0.1, "total_loss": 0.8})
    with pytest.raises(NonFiniteLossError, match=r"epoch 3, batch 8: task loss not finite: cvr \(nan\)\."):
        guard.on_train_batch_end(7, {"loss": float("nan"), "ctr_loss": 0.5, "cvr_loss": float("nan")})


def test_a_non_finite_combination_of_finite_tasks_and_validation_losses_are_caught():
    guard = StopOnNonFiniteLoss(["ctr"])
    with pytest.raises(NonFiniteLossError, match=r"batch 1: combined loss not finite: total_loss \(inf\)"):
        guard.on_train_batch_end(0, {"ctr_loss": 0.5, "total_loss": float("inf")})
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, validation: task loss not finite: ctr \(nan\)"):
        guard.on_epoch_end(0, {"ctr_loss": 0.5, "val_ctr_loss": float("nan")})


def test_the_epoch_level_guard_has_no_batch_hooks_and_names_the_epoch_and_task():
    guard = StopOnNonFiniteEpochLoss(["ctr", "cvr"])
    assert not guard._implements_train_batch_hooks()  # ParameterServerStrategy refuses batch-level callbacks
    assert StopOnNonFiniteLoss(["ctr"])._implements_train_batch_hooks()
    guard.on_epoch_end(0, {"ctr_loss": 0.5, "cvr_loss": 0.2, "val_ctr_loss": 0.4})
    with pytest.raises(NonFiniteLossError, match=r"epoch 2: task loss not finite: cvr \(inf\)"):
        guard.on_epoch_end(1, {"ctr_loss": 0.5, "cvr_loss": float("inf")})
