"""The training tasks of the quality benchmark: small, real PyTorch trainings on data that
Debian's packages ship (sklearn's bundled data sets, a licence text) or that the task makes
(a low-rank non-negative matrix), each a few seconds on one CPU thread.

A task makes a `Training` for an optimizer, an initial lr and a seed. The seed fixes the
initial weights and the order of the minibatches, so that every schedule of a case sees the
same run until the learning rates differ. A training is driven one epoch at a time by the
runner (quality.py): `train_epoch(driver)` calls `driver.before_update(optimizer)` between
the backward pass and the optimizer's step (where hypergradient descent adapts the lr) and
`driver.after_update(loss)` after it, stopping the epoch when that returns False (the
loss stopped being a number); `val_loss()` measures the validation loss.
"""

import math

import torch

# The licence text every Debian system ships (base-files): the language model's corpus.
TEXT_PATH = "/usr/share/common-licenses/GPL-3"


def _split(x, y, val_fraction, seed):
    """A fixed train/validation split of a data set (the same for every seed of a task)."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = int(len(x) * val_fraction)
    return x[order[n_val:]], y[order[n_val:]], x[order[:n_val]], y[order[:n_val]]


def _digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    return _split(x, y, 0.3, 1234)


def _standardized(load, regression):
    """A bundled sklearn data set with standardized features (and, for a regression, a
    standardized target), split as every task splits."""
    data = load()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(data.target, dtype=torch.float32).unsqueeze(1)
    if regression:
        y = (y - y.mean()) / y.std()
    return _split(x, y, 0.3, 1234)


def _diabetes():
    from sklearn.datasets import load_diabetes

    return _standardized(load_diabetes, regression=True)


def _breast_cancer():
    from sklearn.datasets import load_breast_cancer

    return _standardized(load_breast_cancer, regression=False)


def _text():
    with open(TEXT_PATH, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    codes = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    return codes, len(chars)


def make_optimizer(name, params, lr):
    """SGD with momentum 0.9, or Adam with PyTorch's defaults."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return torch.optim.Adam(params, lr=lr)


class Supervised:
    """A model trained with minibatches of a fixed data set, validated on a held-out part."""

    def __init__(self, model, loss_fn, data, batch, optimizer, lr, seed):
        self.model = model
        self.loss_fn = loss_fn
        self.x, self.y, self.x_val, self.y_val = data
        self.batch = batch
        self.optimizer = make_optimizer(optimizer, model.parameters(), lr)
        self.order = torch.Generator().manual_seed(seed + 7919)
        self.steps_per_epoch = math.ceil(len(self.x) / batch)

    def train_epoch(self, driver):
        self.model.train()
        for indices in torch.randperm(len(self.x), generator=self.order).split(self.batch):
            self.optimizer.zero_grad()
            loss = self.loss_fn(self.model(self.x[indices]), self.y[indices])
            loss.backward()
            driver.before_update(self.optimizer)
            self.optimizer.step()
            if not driver.after_update(loss.item()):
                return False
        return True

    def val_loss(self):
        self.model.eval()
        with torch.no_grad():
            return self.loss_fn(self.model(self.x_val), self.y_val).item()


class LanguageModel(Supervised):
    """A character-level LSTM: windows of the text are the minibatches' samples."""

    WINDOW = 16

    def __init__(self, codes, vocab, optimizer, lr, seed):
        train, val = codes[:4352], codes[4352:6528]
        windows = train[: len(train) // (self.WINDOW + 1) * (self.WINDOW + 1)]
        windows = windows.view(-1, self.WINDOW + 1)
        val_windows = val[: len(val) // (self.WINDOW + 1) * (self.WINDOW + 1)]
        val_windows = val_windows.view(-1, self.WINDOW + 1)
        model = CharLSTM(vocab)
        data = (windows[:, :-1], windows[:, 1:], val_windows[:, :-1], val_windows[:, 1:])
        super().__init__(model, _sequence_loss, data, 32, optimizer, lr, seed)


def _sequence_loss(logits, targets):
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             targets.reshape(-1))


class CharLSTM(torch.nn.Module):
    def __init__(self, vocab, embed=16, hidden=32):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, embed)
        self.lstm = torch.nn.LSTM(embed, hidden, batch_first=True)
        self.out = torch.nn.Linear(hidden, vocab)

    def forward(self, x):
        return self.out(self.lstm(self.embed(x))[0])


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv(x.view(-1, 1, 8, 8))), 2)
        return self.fc(x.flatten(1))


class NMF:
    """Stochastic NMF: V (60x200, rank 5 plus noise) ~ W H, SGD on minibatches of columns,
    projected on W, H >= 0. The validation loss is the whole objective per entry.

    `stable_step()` is (1 + momentum)/L with L = sigma_max(W)^2 + sigma_max(H)^2 +
    ||WH - V||_F, a bound on the Lipschitz constant of the gradient of 1/2||V - WH||_F^2
    (and so of any minibatch of its columns), at the current point: the lr_cap of the
    report after each step. Gradient descent is stable below 2/L, and with heavy-ball
    momentum below 2(1 + momentum)/L (on a quadratic of curvature L); half of that edge,
    1/L without momentum, is the cap.
    """

    ROWS, COLUMNS, RANK, BATCH = 60, 200, 5, 40

    def __init__(self, optimizer, lr, seed):
        data = torch.Generator().manual_seed(4242)
        w = torch.rand(self.ROWS, self.RANK, generator=data)
        h = torch.rand(self.RANK, self.COLUMNS, generator=data)
        v = w @ h + 0.01 * torch.rand(self.ROWS, self.COLUMNS, generator=data)
        self.v = v / v.mean()
        init = torch.Generator().manual_seed(seed)
        scale = math.sqrt(1.0 / self.RANK)
        self.w = (scale * torch.rand(self.ROWS, self.RANK, generator=init)).requires_grad_()
        self.h = (scale * torch.rand(self.RANK, self.COLUMNS, generator=init)).requires_grad_()
        self.optimizer = make_optimizer(optimizer, [self.w, self.h], lr)
        self.order = torch.Generator().manual_seed(seed + 7919)
        self.steps_per_epoch = self.COLUMNS // self.BATCH

    def stable_step(self):
        with torch.no_grad():
            sigma_w = torch.linalg.matrix_norm(self.w, ord=2).item()
            sigma_h = torch.linalg.matrix_norm(self.h, ord=2).item()
            residual = torch.linalg.matrix_norm(self.w @ self.h - self.v).item()
        bound = sigma_w ** 2 + sigma_h ** 2 + residual
        momentum = self.optimizer.param_groups[0].get("momentum", 0.0)
        return (1.0 + momentum) / bound if math.isfinite(bound) and bound > 0 else None

    def train_epoch(self, driver):
        for columns in torch.randperm(self.COLUMNS, generator=self.order).split(self.BATCH):
            self.optimizer.zero_grad()
            loss = 0.5 * ((self.v[:, columns] - self.w @ self.h[:, columns]) ** 2).sum()
            loss.backward()
            driver.before_update(self.optimizer)
            self.optimizer.step()
            with torch.no_grad():
                self.w.clamp_(min=0)
                self.h.clamp_(min=0)
            # A minibatch's loss per entry, on the scale of the validation loss.
            if not driver.after_update(loss.item() / (self.ROWS * self.BATCH)):
                return False
        return True

    def val_loss(self):
        with torch.no_grad():
            return (0.5 * ((self.v - self.w @ self.h) ** 2).mean()).item()


def _mlp(inputs, hidden, outputs):
    return torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, outputs))


class Task:
    """A family of trainings: a name, its epochs, and how to make one."""

    def __init__(self, name, epochs, make, caps=False, held_out=False):
        self.name = name
        self.epochs = epochs
        self._make = make
        self.caps = caps  # the training reports a stability cap (NMF)
        self.held_out = held_out

    def make(self, optimizer, lr, seed):
        torch.manual_seed(seed)
        return self._make(optimizer, lr, seed)


# The data sets loaded so far in this process: a worker trains hundreds of runs, and
# loading a data set costs more than some of the trainings.
_LOADED = {}


def once(key, load):
    """The data set called key, loaded by load() on first use in this process."""
    if key not in _LOADED:
        _LOADED[key] = load()
    return _LOADED[key]


def all_tasks():
    """Every task, design set first, then the held-out ones."""

    def mlp(opt, lr, seed):
        return Supervised(_mlp(64, 64, 10), torch.nn.functional.cross_entropy,
                          once("digits", _digits), 64, opt, lr, seed)

    def cnn(opt, lr, seed):
        return Supervised(SmallCNN(), torch.nn.functional.cross_entropy,
                          once("digits", _digits), 64, opt, lr, seed)

    def lstm(opt, lr, seed):
        codes, vocab = once("text", _text)
        return LanguageModel(codes, vocab, opt, lr, seed)

    def regression(opt, lr, seed):
        return Supervised(_mlp(10, 32, 1), torch.nn.functional.mse_loss,
                          once("diabetes", _diabetes), 32, opt, lr, seed)

    def logistic(opt, lr, seed):
        return Supervised(torch.nn.Linear(30, 1),
                          torch.nn.functional.binary_cross_entropy_with_logits,
                          once("cancer", _breast_cancer), 32, opt, lr, seed)

    def autoencoder(opt, lr, seed):
        digits = once("digits", _digits)
        model = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Tanh(),
                                    torch.nn.Linear(16, 64))
        data = (digits[0], digits[0], digits[2], digits[2])
        return Supervised(model, torch.nn.functional.mse_loss, data, 64, opt, lr, seed)

    return [
        Task("mlp-digits", 20, mlp),
        Task("cnn-digits", 15, cnn),
        Task("lstm-text", 12, lstm),
        Task("nmf", 30, lambda opt, lr, seed: NMF(opt, lr, seed), caps=True),
        Task("regression-diabetes", 30, regression),
        Task("logistic-cancer", 20, logistic, held_out=True),
        Task("autoencoder-digits", 20, autoencoder, held_out=True),
    ]
