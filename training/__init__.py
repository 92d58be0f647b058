"""Networks, data sets, losses and the training loop, each built by class name from kwargs."""
