"""Qt-free core: encodings, tensors, model tree, plans and metrics."""
