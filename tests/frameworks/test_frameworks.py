"""Marshal backends of the deep-learning frameworks: torch, Keras and TensorFlow values round-trip exactly (in-process, but each framework takes seconds to import)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from nbconvert_kfp.runtime.step import Step

from backendcase import FakeArtifact, classification_data, need, roundtrip


def _tiny_net_class():
    torch = need("torch")

    class TinyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = torch.nn.Linear(4, 8)
            self.out = torch.nn.Linear(8, 2)
            self.register_buffer("scale", torch.tensor(0.5))

        def forward(self, x):
            return self.out(torch.relu(self.hidden(x))) * self.scale

    TinyNet.__qualname__ = "TinyNet"
    globals()["TinyNet"] = TinyNet  # importable by reference, as a notebook class is in its step
    return TinyNet


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64", "int8", "int64", "bool",
                                   "complex64", "uint8"])
def test_torch_tensors_round_trip_exactly(dtype):
    torch = need("torch")
    tensor = (torch.arange(24, dtype=torch.float64).reshape(4, 6) - 7.5).to(getattr(torch, dtype))
    loaded, fmt = roundtrip(tensor)
    assert fmt == "torch.pt" and type(loaded) is torch.Tensor
    assert loaded.dtype == tensor.dtype and loaded.shape == tensor.shape and torch.equal(loaded, tensor)


def test_torch_views_parameters_and_requires_grad_are_kept():
    torch = need("torch")
    base = torch.randn(5, 4)
    view = base.t()[1:]
    loaded, _ = roundtrip(view)
    assert loaded.stride() == view.stride() and torch.equal(loaded, view)
    parameter = torch.nn.Parameter(torch.ones(3))
    loaded, _ = roundtrip(parameter)
    assert type(loaded) is torch.nn.Parameter and loaded.requires_grad


def test_torch_module_round_trips_whole_with_its_class_and_state():
    torch = need("torch")
    torch.manual_seed(0)
    net = _tiny_net_class()().eval()
    loaded, fmt = roundtrip(net)
    assert fmt == "torch.pt" and type(loaded) is type(net)
    x = torch.randn(3, 4)
    assert torch.equal(loaded(x), net(x))
    assert loaded.state_dict().keys() == net.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    assert loaded.training is False


def test_torch_module_class_defined_in_a_step_loads_where_the_step_redefines_it(tmp_path):
    need("torch")
    definition = textwrap.dedent("""
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = torch.nn.Linear(3, 1)

            def forward(self, x):
                return self.layer(x)
    """)
    out = FakeArtifact(tmp_path / "net")
    with Step("train") as step:
        step.run([(0, definition), (1, "\ntorch.manual_seed(1)\nnet = Net()\nexpected = net(torch.ones(2, 3))\n")])
        step.save({"net": out})
        expected = step.namespace["expected"]
    assert out.metadata["format"] == "torch.pt" and out.metadata["python_type"] == "__main__.Net"
    with Step("use") as step:
        step.run([("upstream definitions", definition)])
        step.load({"net": out})
        step.run([(2, "\nactual = net(torch.ones(2, 3))\n")])
        assert bool((step.namespace["actual"] == expected).all())


def test_keras_model_round_trips_as_keras_with_exact_predictions():
    keras = need("keras")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(1)(keras.layers.Dense(4, activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="mse")
    X, y = classification_data(64)
    model.fit(X, y, epochs=1, verbose=0)
    loaded, fmt = roundtrip(model)
    assert fmt == "keras" and isinstance(loaded, keras.Model)
    assert np.array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), model.get_weights()))
    assert loaded.optimizer.__class__ is model.optimizer.__class__


def test_keras_custom_layer_defined_in_the_notebook_loads_without_registration(tmp_path):
    need("keras")
    definition = textwrap.dedent("""
        import keras

        class Doubler(keras.layers.Layer):
            def call(self, x):
                return x * 2.0
    """)
    out = FakeArtifact(tmp_path / "model")
    build = "\nmodel = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), Doubler()])\n"
    with Step("build") as step:
        step.run([(0, definition), (1, build)])
        step.save({"model": out})
        weights = step.namespace["model"].get_weights()
    assert out.metadata["format"] == "keras"
    with Step("use") as step:
        step.run([("upstream definitions", definition)])
        step.load({"model": out})
        assert type(step.namespace["model"].layers[-1]).__name__ == "Doubler"
        assert all(np.array_equal(a, b) for a, b in zip(step.namespace["model"].get_weights(), weights))


def test_tensorflow_module_round_trips_as_a_savedmodel():
    tf = need("tensorflow", "tensorflow is not installed (make test installs tensorflow-cpu)")

    class Scale(tf.Module):
        def __init__(self):
            self.factor = tf.Variable(3.0)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x):
            return x * self.factor

    loaded, fmt = roundtrip(Scale())
    assert fmt == "tf.savedmodel"
    np.testing.assert_array_equal(loaded(tf.constant([1.0, 2.0])).numpy(), [3.0, 6.0])
