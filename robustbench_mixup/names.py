"""The closed sets the command line offers, kept free of torch so `robust-eval --help` starts fast.

`data.LOADERS` and `models.MODELS` are the registries themselves; a test checks they match these.
"""

DATASETS = ("digits", "mnist-5k", "fashion-mnist", "mnist", "cifar10", "cifar100")
MODELS = ("mlp", "smallcnn", "preact-resnet18")
DEVICES = ("auto", "cpu", "cuda")
