import hashlib

import pytest
import torch

import labkit
from labkit import data


def test_device_and_seed(monkeypatch):
    monkeypatch.setenv("LABKIT_DEVICE", "cpu")
    assert labkit.device() == torch.device("cpu")
    monkeypatch.setenv("LABKIT_DEVICE", "not-a-device")
    with pytest.raises(ValueError, match="LABKIT_DEVICE"):
        labkit.device()
    labkit.seed(3)
    a = torch.rand(3)
    labkit.seed(3)
    assert torch.equal(a, torch.rand(3))
    with pytest.raises(ValueError, match="seed"):
        labkit.seed(-1)


def test_fast_mode_and_pick(monkeypatch):
    monkeypatch.setenv("LABKIT_FAST", "1")
    assert labkit.fast_mode() and labkit.pick(100, 10) == 10
    monkeypatch.setenv("LABKIT_FAST", "0")
    assert not labkit.fast_mode() and labkit.pick(100, 10) == 100


@pytest.mark.parametrize(
    "name, kwargs, task, classes",
    [
        ("gaussian_mixture", dict(n=90, dim=5, classes=3), "classification", 3),
        ("two_moons", dict(n=50), "classification", 2),
        ("spirals", dict(n=60, classes=3), "classification", 3),
        ("teacher_student", dict(n=40, dim=4, teacher_width=8, noise=0.1), "regression", None),
        ("sparse_parity", dict(n=64, n_bits=10, k=3), "classification", 2),
    ],
)
def test_generators_are_seeded_and_well_formed(name, kwargs, task, classes):
    a = data.load(name, seed=1, **kwargs)
    b = data.load(name, seed=1, **kwargs)
    c = data.load(name, seed=2, **kwargs)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)
    assert a.task == task and a.num_classes == classes and len(a) == kwargs["n"]
    assert a.inputs.dtype == torch.float32 and torch.isfinite(a.inputs).all()
    if task == "classification":
        assert a.targets.dtype == torch.int64 and set(a.targets.tolist()) == set(range(classes))
    else:
        assert a.targets.shape == (kwargs["n"], 1)


def test_gaussian_mixture_separation_controls_difficulty():
    ds = data.gaussian_mixture(n=300, dim=2, classes=3, separation=8.0, seed=0)
    means = torch.stack([ds.inputs[ds.targets == k].mean(0) for k in range(3)])
    assert torch.allclose(means.norm(dim=1), torch.full((3,), 8.0), atol=0.5)


def test_sparse_parity_labels_are_a_parity_of_k_bits():
    ds = data.sparse_parity(n=512, n_bits=8, k=2, seed=0)
    bits = (ds.inputs < 0).long()
    # exactly one pair of bits explains every label
    hits = [(i, j) for i in range(8) for j in range(i + 1, 8)
            if torch.equal((bits[:, i] + bits[:, j]) % 2, ds.targets)]
    assert len(hits) == 1


def test_modular_addition_split():
    train, test = data.modular_addition(p=7, train_frac=0.5, seed=0)
    assert len(train) + len(test) == 49 and train.num_classes == 7 and train.in_shape == (14,)
    a = train.inputs[:, :7].argmax(1)
    b = train.inputs[:, 7:].argmax(1)
    assert torch.equal((a + b) % 7, train.targets)


def test_digits_bundled_with_provenance():
    path = data.data_dir() / "digits.csv.gz"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
    ds = data.digits()
    assert len(ds) == 1797 and ds.in_shape == (64,) and ds.num_classes == 10
    assert 0.0 <= ds.inputs.min() and ds.inputs.max() <= 1.0
    assert torch.bincount(ds.targets).min() > 170
    assert data.digits(flat=False).in_shape == (1, 8, 8)
    readme = (data.data_dir() / "README.md").read_text()
    assert "CC BY 4.0" in readme and "digits.csv.gz" in readme


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="two_moons"):
        data.load("mnits")


def test_split_and_batches():
    ds = data.two_moons(n=100, seed=0)
    tr, te = ds.split(0.8, seed=0)
    assert len(tr) == 80 and len(te) == 20
    all_rows = torch.cat([tr.inputs, te.inputs])
    assert torch.equal(all_rows.sort(0).values, ds.inputs.sort(0).values)
    it = ds.batches(32, seed=5)
    first = [next(it) for _ in range(3)]  # 3 batches per epoch (remainder 4 skipped)
    assert all(x.shape == (32, 2) and y.shape == (32,) for x, y in first)
    rows = torch.cat([x for x, _ in first])
    assert len(torch.unique(rows, dim=0)) == 96  # without replacement within an epoch
    again = [next(ds.batches(32, seed=5)) for _ in range(1)]
    assert torch.equal(again[0][0], first[0][0])
    idx = data.batch_indices(100, 32, 4, seed=5)
    assert idx.shape == (4, 32) and torch.equal(ds.inputs[idx[1]], first[1][0])


@pytest.mark.parametrize("bs", [0, 101, -3])
def test_bad_batch_size(bs):
    with pytest.raises(ValueError, match="batch_size"):
        next(data.two_moons(n=100).batches(bs))


def test_as_dataset_pairs_and_errors():
    x = torch.randn(10, 3)
    reg = data.as_dataset((x, torch.randn(10)))
    assert reg.task == "regression" and reg.targets.shape == (10, 1)
    cls = data.as_dataset((x, torch.tensor([0, 1, 2] * 3 + [0])))
    assert cls.task == "classification" and cls.num_classes == 3
    with pytest.raises(TypeError, match="Dataset or an"):
        data.as_dataset(x)
    with pytest.raises(ValueError, match="same number of rows"):
        data.as_dataset((x, torch.randn(9)))
    with pytest.raises(ValueError, match="empty"):
        data.as_dataset((torch.randn(0, 3), torch.randn(0)))


def test_to_casts_floats_only():
    ds = data.gaussian_mixture(n=20, seed=0).to("cpu", torch.float64)
    assert ds.inputs.dtype == torch.float64 and ds.targets.dtype == torch.int64


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: data.gaussian_mixture(n=0), "n must be > 0"),
        (lambda: data.gaussian_mixture(classes=1), "classes"),
        (lambda: data.sparse_parity(n_bits=4, k=5), "k must be between"),
        (lambda: data.teacher_student(noise=-1.0), "noise"),
        (lambda: data.two_moons(n=2.5), "n must be an int"),
    ],
)
def test_generator_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# ---------------------------------------------------------------- bad data is not divergence (issue 13)

X = torch.randn(6, 3)
Y = torch.tensor([0, 1, 2, 0, 1, 2])


def _nan_at(t, index):
    t = t.clone()
    t[index] = float("nan")
    return t


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: data.Dataset(_nan_at(X, (2, 1)), Y, "classification", 3), ValueError,
         r"inputs contains 1 NaN or inf value\(s\), the first at index \(2, 1\)"),
        (lambda: data.Dataset(X.masked_fill(X > 0, float("inf")), Y, "classification", 3), ValueError,
         "inputs contains .* NaN or inf"),
        (lambda: data.Dataset(X, _nan_at(torch.randn(6, 1), (4, 0)), "regression"), ValueError,
         r"targets contains 1 NaN or inf value\(s\), the first at index \(4, 0\)"),
        (lambda: data.Dataset(X, torch.tensor([0, 1, 3, 0, 1, 2]), "classification", 3), ValueError,
         r"targets has label 3 at row 2, outside \[0, num_classes=3\)"),
        (lambda: data.Dataset(X, torch.tensor([0, -1, 2, 0, 1, 2]), "classification", 3), ValueError,
         r"targets has label -1 at row 1"),
        (lambda: data.Dataset(X, torch.tensor([0.0, 1.5, 2, 0, 1, 2]), "classification", 3), TypeError,
         "classification targets must be integer class labels, got dtype torch.float32"),
        (lambda: data.Dataset(X, Y == 1, "classification", 2), TypeError, "integer class labels"),
        (lambda: data.Dataset(X, Y[:5], "classification", 3), ValueError, "same number of rows, got 6 and 5"),
        (lambda: data.Dataset(X.numpy(), Y, "classification", 3), TypeError, "inputs must be a torch.Tensor"),
        (lambda: data.Dataset(X, [0, 1, 2, 0, 1, 2], "classification", 3), TypeError, "targets must be a torch"),
        (lambda: data.Dataset(X, Y, "classification", 0), ValueError, "num_classes must be > 0"),
        (lambda: data.Dataset(X, Y.reshape(6, 1).long(), "regression"), TypeError,
         "regression targets must be floating point"),
        (lambda: data.Dataset(torch.tensor(1.0), Y, "classification", 3), ValueError, "row"),
        (lambda: data.as_dataset((X, torch.tensor([0, 1, -2, 0, 1, 2]))), ValueError, "label -2 at row 2"),
        (lambda: data.as_dataset((X, Y == 1)), TypeError, "booleans"),
        (lambda: data.as_dataset((X, _nan_at(torch.randn(6), 0))), ValueError, "targets contains 1 NaN"),
        (lambda: data.as_dataset((["a", "b"], [0, 1])), TypeError, "data must be numeric"),
        (lambda: data.as_dataset((_nan_at(X, (0, 0)).numpy(), Y.numpy())), ValueError, "inputs contains 1 NaN"),
        (lambda: data.Dataset(torch.full((2, 2), 1e5), torch.tensor([0, 1]), "classification", 2).to(
            dtype=torch.float16), ValueError, "inputs contains 4 NaN or inf"),  # float16 overflows above 65504
        (lambda: data.two_moons(n=1).split(0.5), ValueError, "cannot split a dataset of 1 row"),
        (lambda: data.two_moons(n=10).split("half"), TypeError, "frac must be a number"),
        (lambda: data.two_moons(n=10, seed=-1), ValueError, "seed must be >= 0"),
        (lambda: data.two_moons(n=10, seed=1.5), TypeError, "seed must be a non-negative int"),
        (lambda: data.two_moons(noise=-0.1), ValueError, "noise must be >= 0"),
        (lambda: data.spirals(turns=0), ValueError, "turns must be > 0"),
        (lambda: data.teacher_student(out_dim=0), ValueError, "out_dim must be > 0"),
        (lambda: data.modular_addition(p=5, train_frac=1.0), ValueError, "train_frac must be strictly between"),
        (lambda: data.batch_indices(10, 2, 0), ValueError, "steps must be > 0"),
    ],
)
def test_bad_data_is_refused_when_built(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_valid_data_still_builds():
    ds = data.Dataset(X, Y, "classification")  # num_classes defaults to the largest label + 1
    assert ds.num_classes == 3 and ds.out_dim == 3
    assert len(ds[Y == 5]) == 0 and ds[Y == 5].num_classes == 3  # an empty subset is fine
    half = ds.to(dtype=torch.float16)
    assert half.inputs.dtype == torch.float16 and half.targets.dtype == torch.int64
    reg = data.as_dataset((X.numpy(), torch.randn(6).numpy()))
    assert reg.task == "regression" and reg.targets.shape == (6, 1)
    one = data.as_dataset((X[:1], Y[:1]))
    assert len(one) == 1 and one.num_classes == 1


def test_lr_schedule_values_are_checked_before_training():
    from labkit.optim import schedule

    with pytest.raises(ValueError, match=r"lr_schedule returned -0.5 at step 3; .* finite number >= 0"):
        schedule(lambda t: 1.0 if t < 3 else -0.5, 10)
    with pytest.raises(ValueError, match="lr_schedule returned nan at step 0"):
        schedule(lambda t: float("nan"), 10)
    with pytest.raises(TypeError, match="lr_schedule must return a number, got None"):
        schedule(lambda t: None, 10)
    f = schedule(lambda t: 1.0 / (t + 1), 4)
    assert [f(t) for t in range(4)] == [1.0, 0.5, 1 / 3, 0.25] and f(9) == 0.1
    assert schedule("cosine", 10)(10) == 0.0  # zero is a valid multiplier


def test_fit_refuses_bad_schedule_and_bad_labels_before_step_0():
    import labkit

    ds = data.gaussian_mixture(n=32, dim=2, classes=3, seed=0)
    model = labkit.models.mlp(2, [8], 3, seed=0)
    with pytest.raises(ValueError, match=r"lr_schedule returned -1\.0 at step 5"):
        labkit.train.fit(model, ds, steps=10, lr=0.1, lr_schedule=lambda t: -1.0 if t == 5 else 1.0)
    with pytest.raises(ValueError, match="targets has label -1 at row 0"):
        labkit.train.fit(model, (ds.inputs, ds.targets.index_fill(0, torch.tensor([0]), -1)), steps=2)
    with pytest.raises(ValueError, match="inputs contains 1 NaN"):
        labkit.train.fit(model, (_nan_at(ds.inputs, (4, 1)), ds.targets), steps=2)
