import numpy as np

from dupfinder import load_model


def test_tiny_model_encodes_unit_vectors(tiny_model):
    enc = load_model(tiny_model)
    v = enc.encode(["How old are you?", "What is your age?", ""])
    assert v.shape == (3, enc.dim) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
