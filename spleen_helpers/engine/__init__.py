"""The engine the command line and long runs execute: transforms, model, checkpoint, history,
the training loop, process launch, weights, predict and evaluate. It never imports the
teaching aids."""
