import numpy as np
import pytest
import tensorflow as tf

from recsys.layers.adatt import AdaTT, AdaTTLevel
from recsys.layers.experts import ExpertGroup, GatedMixture
from recsys.layers.mmoe import MMoE
from recsys.layers.multitask import mean_of
from recsys.layers.ple import PLE, CGCLevel
from recsys.layers.shared_bottom import SharedBottom

TASKS, BATCH, DIM, WIDTH = 3, 8, 6, 4

BACKBONES = {
    "shared_bottom": lambda: SharedBottom(TASKS, [8, WIDTH], dropout=0.1),
    "mmoe": lambda: MMoE(TASKS, 3, [8, WIDTH], dropout=0.1),
    "cgc": lambda: PLE(TASKS, 1, 2, 1, [8, WIDTH]),
    "ple": lambda: PLE(TASKS, 2, 2, 1, [8, WIDTH], dropout=0.1),
    "adatt": lambda: AdaTT(TASKS, 2, 2, 1, [8, WIDTH], dropout=0.1),
    "adatt_sp": lambda: AdaTT(TASKS, 2, 1, expert_units=[WIDTH]),  # no shared experts
}


def normal(*shape, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=shape), tf.float32)


def task_inputs(seed=0):
    return [normal(BATCH, DIM, seed=seed + k) for k in range(TASKS)]


@pytest.fixture(autouse=True)
def _seed():
    tf.keras.utils.set_random_seed(0)


@pytest.fixture(params=list(BACKBONES))
def backbone(request):
    return BACKBONES[request.param]()


@pytest.mark.parametrize("shared", [True, False], ids=["shared_input", "task_inputs"])
def test_one_output_per_task_of_the_expert_width(backbone, shared):
    outputs = backbone(normal(BATCH, DIM) if shared else task_inputs(), training=True)
    assert [tuple(o.shape) for o in outputs] == [(BATCH, WIDTH)] * TASKS


def test_shared_bottom_without_units_is_the_identity_of_the_mean_input():
    inputs = task_inputs()
    outputs, gates = SharedBottom(TASKS, [])(inputs, return_gates=True)
    for output in outputs:
        np.testing.assert_allclose(output, mean_of(inputs), rtol=1e-6)
    assert gates == {}


def test_gates_are_distributions_over_the_named_experts(backbone):
    _, gates = backbone(task_inputs(), return_gates=True)
    names = backbone.expert_names()
    assert set(gates) == set(names)
    for name, weights in gates.items():
        assert weights.shape == (BATCH, len(names[name])), name
        assert np.all(weights.numpy() >= 0), name
        np.testing.assert_allclose(tf.reduce_sum(weights, axis=-1), np.ones(BATCH), rtol=1e-5, err_msg=name)


def gate_sizes(layer):
    _, gates = layer(task_inputs(), return_gates=True)
    return {name: weights.shape[-1] for name, weights in gates.items()}


def test_gate_sizes_follow_the_papers():
    tasks = {f"task{k}" for k in range(TASKS)}
    assert gate_sizes(MMoE(TASKS, 3, [WIDTH])) == {f"level1/{t}": 3 for t in tasks}
    # PLE: a task gate mixes its 2 own + 1 shared experts; the shared gate all 3·2 + 1, at level 1 only
    assert gate_sizes(PLE(TASKS, 2, 2, 1, [WIDTH])) == {
        **{f"level{j}/{t}": 3 for j in (1, 2) for t in tasks}, "level1/shared": 7}
    # AdaTT: every gate reaches every task's experts and the shared ones; the shared unit has its
    # own gate at every level but the last (mtl_lib.py's AdaTTWSharedExps)
    assert gate_sizes(AdaTT(TASKS, 2, 2, 1, [WIDTH])) == {
        **{f"level{j}/{t}": 7 for j in (1, 2) for t in tasks}, "level1/shared": 7}
    assert gate_sizes(AdaTT(TASKS, 1, 2, expert_units=[WIDTH])) == {f"level1/{t}": 6 for t in tasks}


def test_cgc_is_one_ple_level_without_a_shared_gate():
    cgc = PLE(TASKS, 1, 2, 1, [WIDTH])
    _, gates = cgc(task_inputs(), return_gates=True)
    assert sorted(gates) == [f"level1/task{k}" for k in range(TASKS)]
    assert sorted(cgc.expert_names()) == sorted(gates)
    assert len(cgc.levels) == 1 and cgc.levels[0].shared_gate is None
    # nothing is built that no output depends on: 3·2 + 1 experts and 3 gates, one Dense each
    assert sum("kernel" in v.name for v in cgc.trainable_variables) == 7 + 3


def test_gradients_reach_every_variable(backbone):
    inputs = task_inputs()
    with tf.GradientTape() as tape:
        loss = tf.add_n([tf.reduce_sum(o) for o in backbone(inputs, training=False)])
    variables = backbone.trainable_variables
    assert variables
    for variable, gradient in zip(variables, tape.gradient(loss, variables)):
        assert gradient is not None, variable.name
        assert np.any(gradient.numpy() != 0), variable.name


@pytest.mark.parametrize("name", ["mmoe", "cgc", "ple", "adatt", "adatt_sp"])
def test_level1_task_gate_reads_only_its_own_input(name):
    layer = BACKBONES[name]()
    inputs = task_inputs()
    changed = [inputs[0], inputs[1] + 1.0, inputs[2]]
    (outputs, gates), (changed_outputs, changed_gates) = (
        layer(x, return_gates=True) for x in (inputs, changed))
    np.testing.assert_allclose(gates["level1/task0"], changed_gates["level1/task0"])
    np.testing.assert_allclose(gates["level1/task2"], changed_gates["level1/task2"])
    assert not np.allclose(gates["level1/task1"], changed_gates["level1/task1"])
    # yet task 0's output moves: it mixes experts that read inputs[1] or the mean
    assert not np.allclose(outputs[0], changed_outputs[0])


def test_ple_level2_task_gate_ignores_what_reaches_only_the_shared_path():
    """Task 0's level-2 gate must read task 0's level-1 output, not the shared level-1 output.

    Zeroing the level-1 shared experts makes them output constant zeros, so task
    0's level-1 output (its own experts on inputs[0], mixed by its gate on
    inputs[0], plus zeros) no longer depends on inputs[1]. The level-1 shared
    gate still mixes task 1's experts, so the shared level-1 output does depend
    on inputs[1]. Changing only inputs[1] must therefore leave task 0's level-2
    gate unchanged (it would change if the gate read the shared output) while
    the shared gate and task 1's level-2 gate do change; changing inputs[0] must
    change task 0's level-2 gate.
    """
    layer = PLE(TASKS, 2, 2, 1, [8, WIDTH])
    inputs = task_inputs()
    layer(inputs)
    for variable in layer.levels[0].shared_group.trainable_variables:
        variable.assign(tf.zeros_like(variable))
    _, gates = layer(inputs, return_gates=True)
    _, other_task_changed = layer([inputs[0], inputs[1] + 1.0, inputs[2]], return_gates=True)
    _, own_task_changed = layer([inputs[0] + 1.0, inputs[1], inputs[2]], return_gates=True)
    np.testing.assert_allclose(gates["level2/task0"], other_task_changed["level2/task0"], rtol=1e-6)
    assert not np.allclose(gates["level1/shared"], other_task_changed["level1/shared"])
    assert not np.allclose(gates["level2/task1"], other_task_changed["level2/task1"])
    assert not np.allclose(gates["level2/task0"], own_task_changed["level2/task0"])


def test_ple_level2_gates_are_computed_from_the_level1_outputs():
    """Recomputes level 2 from level 1's outputs: task k's gate from task k's output, not the
    raw input nor the shared output (both of which give different weights here)."""
    layer = PLE(TASKS, 2, 2, 1, [8, WIDTH])
    inputs = task_inputs()
    _, gates = layer(inputs, return_gates=True)
    level1_outputs, level1_shared, _ = layer.levels[0](inputs, mean_of(inputs))
    for k in range(TASKS):
        gate = layer.levels[1].task_gates[k].gate
        expected = tf.nn.softmax(gate(level1_outputs[k]))
        np.testing.assert_allclose(gates[f"level2/task{k}"], expected, rtol=1e-5)
        assert not np.allclose(gates[f"level2/task{k}"], tf.nn.softmax(gate(level1_shared)), atol=1e-4)
    final_outputs, no_shared, _ = layer.levels[1](level1_outputs, level1_shared)
    np.testing.assert_allclose(layer(inputs)[0], final_outputs[0], rtol=1e-5)
    assert no_shared is None


def test_adatt_output_is_the_gated_mixture_plus_the_native_expert_residual():
    layer = AdaTT(TASKS, 2, 2, 1, [8, WIDTH])
    inputs = task_inputs()
    layer(inputs)
    level = layer.levels[0]
    assert len(level.native_weights) == TASKS + 1  # every task unit and the shared one
    for weights in level.native_weights:
        weights.assign(np.linspace(-2.0, 0.5, weights.shape[0]))
    outputs, gates = layer(inputs, return_gates=True)
    level1_outputs, level1_shared, _ = level(inputs, mean_of(inputs))
    own = [tf.stack(group(x), axis=1) for group, x in zip(level.task_groups, inputs)]
    shared = tf.stack(level.shared_group(mean_of(inputs)), axis=1)
    every = tf.concat(own + [shared], axis=1)
    for unit, (output, experts) in enumerate(zip(level1_outputs + [level1_shared], own + [shared])):
        gate = gates[f"level1/task{unit}" if unit < TASKS else "level1/shared"]
        mixture = tf.einsum("be,bed->bd", gate, every)
        residual = tf.einsum("e,bed->bd", level.native_weights[unit], experts)
        assert not np.allclose(residual, 0.0)
        np.testing.assert_allclose(output - mixture, residual, rtol=1e-4, atol=1e-5)


def test_adatt_native_weights_start_as_the_official_code_initialises_them():
    """Uniform in ±sqrt(1/n) per unit of n experts (mtl_lib.py), not a plain sum of ones."""
    tf.keras.utils.set_random_seed(3)
    layer = AdaTT(TASKS, 1, 4, 2, [WIDTH], name="wide")
    layer(task_inputs())
    task_weights = np.concatenate([w.numpy() for w in layer.levels[0].native_weights])
    assert len(task_weights) == TASKS * 4  # one level: no shared gate, so no shared residual
    assert np.all(np.abs(task_weights) <= np.sqrt(1 / 4))
    assert len(np.unique(task_weights)) == len(task_weights) and np.any(task_weights < 0)


def test_adatt_with_one_expert_per_unit_adds_each_expert_unweighted():
    """mtl_lib.py learns no native weights when every unit has one expert: the residual is the expert."""
    layer = AdaTT(TASKS, 1, 1, 1, [8, WIDTH])
    inputs = task_inputs()
    outputs, gates = layer(inputs, return_gates=True)
    level = layer.levels[0]
    assert not any("native" in v.name for v in layer.trainable_variables)
    own = [group(x)[0] for group, x in zip(level.task_groups, inputs)]
    every = tf.stack(own + level.shared_group(mean_of(inputs)), axis=1)
    for k in range(TASKS):
        mixture = tf.einsum("be,bed->bd", gates[f"level1/task{k}"], every)
        np.testing.assert_allclose(outputs[k] - mixture, own[k], rtol=1e-4, atol=1e-5)


def test_adatt_upper_shared_experts_read_the_shared_fusion_unit_not_the_task_mean():
    layer = AdaTT(TASKS, 2, 2, 1, [8, WIDTH])
    inputs = task_inputs()
    outputs = layer(inputs)
    level1_outputs, level1_shared, _ = layer.levels[0](inputs, mean_of(inputs))
    expected, no_shared, _ = layer.levels[1](level1_outputs, level1_shared)
    assert no_shared is None  # the last level has no shared gate
    mean_fed, _, _ = layer.levels[1](level1_outputs, mean_of(level1_outputs))
    for k in range(TASKS):
        np.testing.assert_allclose(outputs[k], expected[k], rtol=1e-5)
        assert not np.allclose(outputs[k], mean_fed[k])


def test_backbones_round_trip_through_get_config(backbone):
    clone = type(backbone).from_config(backbone.get_config())
    assert clone.get_config() == backbone.get_config()
    assert clone.expert_names() == backbone.expert_names()
    for inputs in (normal(BATCH, DIM), task_inputs()):
        assert ([o.shape for o in clone(inputs)] == [o.shape for o in backbone(inputs)])


@pytest.mark.parametrize("layer", [
    ExpertGroup(2, [8, WIDTH], dropout=0.1), GatedMixture(3),
    CGCLevel(TASKS, 2, 1, [WIDTH], with_shared_gate=True), AdaTTLevel(TASKS, 2, 0, [WIDTH]),
    AdaTTLevel(TASKS, 1, 2, [WIDTH], with_shared_gate=True)],
    ids=lambda layer: type(layer).__name__)
def test_building_blocks_round_trip_through_get_config(layer):
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


def test_invalid_shapes_are_refused():
    with pytest.raises(ValueError, match="expected 3 task inputs"):
        MMoE(TASKS, 2, [WIDTH])(task_inputs()[:2])
    with pytest.raises(ValueError, match="num_levels"):
        PLE(TASKS, 0, 1, 1, [WIDTH])
    with pytest.raises(ValueError, match="at least one expert per task"):
        AdaTT(TASKS, 1, 0, 1, [WIDTH])
    with pytest.raises(ValueError, match="at least one expert"):
        PLE(TASKS, 1, 0, 0, [WIDTH])
    with pytest.raises(TypeError, match="expert_units"):
        AdaTT(TASKS, 1, 1)
